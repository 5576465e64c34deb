// wfdb_annotation.h: WFDB annotation files in MIT format (`.qrs`, `.apn`, `.st`, `.ecg`, `.atr`):
// reader, writer and the standard annotation code table.
//
// The file is a sequence of 16-bit little-endian words. In each word the top 6 bits are a type A
// and the low 10 bits a value I (WFDB annot(5)):
//
//     A in 1..58       an annotation of code A, I samples after the previous one
//     A = 59 SKIP      I = 0; the next 4 bytes are a signed 32-bit interval added to the time
//                      (high 16-bit word first, each word little-endian: "PDP-11 long")
//     A = 60 NUM       I = num field of the previous annotation, kept for the following ones
//     A = 61 SUB       I = subtype of the previous annotation only
//     A = 62 CHN       I = chan field of the previous annotation, kept for the following ones
//     A = 63 AUX       I = byte count of an aux string that follows, padded to an even length
//     A = 0, I = 0     end of file (optional: a file may also just end at a word boundary)
//     A = 0, I > 0     an annotation of code 0 (NOTQRS)
//
// The aux bytes are kept as written (std::string may hold NUL bytes: slpdb's slp41.st and slp45.st
// write the stage as "W\0"). A file that ends inside a SKIP interval or an AUX string, or ends
// on an odd byte, is an Error naming the file and the byte offset. NUM/SUB/CHN/AUX before the
// first annotation are an error too.
//
// Times are sample numbers from the record start (at the record's sampling frequency).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sleepnet::data {

struct WfdbAnnotation {
  int64_t sample = 0;  // time in samples from the record start
  int code = 0;        // annotation type (anntyp), 0..58; see namespace ann below
  int subtype = 0;     // subtyp, 0..1023
  int channel = 0;     // chan, 0..1023
  int num = 0;         // num, 0..1023
  std::string aux;     // auxiliary bytes as written (may contain NUL), empty when absent

  bool operator==(const WfdbAnnotation&) const = default;
};

// Standard WFDB annotation codes (<wfdb/ecgcodes.h>) that matter here.
namespace ann {
inline constexpr int NOTQRS = 0;
inline constexpr int NORMAL = 1;    // N   normal beat (.apn: a non-apnea minute)
inline constexpr int LBBB = 2;      // L
inline constexpr int RBBB = 3;      // R
inline constexpr int ABERR = 4;     // a
inline constexpr int PVC = 5;       // V   premature ventricular contraction
inline constexpr int FUSION = 6;    // F
inline constexpr int NPC = 7;       // J
inline constexpr int APC = 8;       // A   atrial premature beat (.apn: an apnea minute)
inline constexpr int SVPB = 9;      // S   supraventricular premature beat
inline constexpr int VESC = 10;     // E
inline constexpr int NESC = 11;     // j
inline constexpr int PACE = 12;     // /
inline constexpr int UNKNOWN = 13;  // Q   unclassifiable beat
inline constexpr int NOISE = 14;    // ~
inline constexpr int ARFCT = 16;    // |   isolated QRS-like artifact (not a beat; in .qrs files)
inline constexpr int STCH = 18;     // s
inline constexpr int TCH = 19;      // T
inline constexpr int SYSTOLE = 20;  // *
inline constexpr int DIASTOLE = 21; // D
inline constexpr int NOTE = 22;     // "   comment; slpdb .st files hold the stage in its aux
inline constexpr int MEASURE = 23;  // =
inline constexpr int PWAVE = 24;    // p
inline constexpr int BBB = 25;      // B
inline constexpr int PACESP = 26;   // ^
inline constexpr int TWAVE = 27;    // t
inline constexpr int RHYTHM = 28;   // +
inline constexpr int UWAVE = 29;    // u
inline constexpr int LEARN = 30;    // ?
inline constexpr int FLWAV = 31;    // !
inline constexpr int VFON = 32;     // [
inline constexpr int VFOFF = 33;    // ]
inline constexpr int AESC = 34;     // e
inline constexpr int SVESC = 35;    // n
inline constexpr int LINK = 36;     // @
inline constexpr int NAPC = 37;     // x   non-conducted P-wave (blocked APC)
inline constexpr int PFUS = 38;     // f
inline constexpr int WFON = 39;     // (
inline constexpr int WFOFF = 40;    // )
inline constexpr int RONT = 41;     // r
inline constexpr int ACMAX = 49;    // largest standard code
inline constexpr int SKIP = 59;
inline constexpr int NUM = 60;
inline constexpr int SUB = 61;
inline constexpr int CHN = 62;
inline constexpr int AUX = 63;
}  // namespace ann

// Mnemonic of a code ("N", "A", "\"", "|"); "" for codes with none (15, 17, 42..58) or out of range.
std::string_view annotation_mnemonic(int code);
// Code of a mnemonic, or -1 when it is not in the table.
int annotation_code(std::string_view mnemonic);
// True for the codes WFDB counts as beats (isqrs): N L R a V F J A S E j / Q B ? e n x f r.
bool is_beat_annotation(int code);

// Parses MIT-format bytes. `source` names the input in error messages.
std::vector<WfdbAnnotation> parse_wfdb_annotations(std::string_view bytes, const std::string& source);
// Reads the annotation file at `path` ("dir/a01.qrs").
std::vector<WfdbAnnotation> read_wfdb_annotations(const std::string& path);

// MIT-format bytes for `annotations`, which must be sorted by sample (non-decreasing), with
// code 0..58 (code 0 only at a positive time difference from the previous annotation, since
// word 0 is the end marker), subtype/channel/num 0..1023 and aux at most 255 bytes. Writes SKIP
// for intervals above 1023, NUM/CHN only when they change, SUB when non-zero, and the end marker.
// Throws naming the annotation index and the field otherwise.
std::string encode_wfdb_annotations(const std::vector<WfdbAnnotation>& annotations);
// Writes encode_wfdb_annotations(annotations) to `path`.
void write_wfdb_annotations(const std::string& path, const std::vector<WfdbAnnotation>& annotations);

}  // namespace sleepnet::data
