// wfdb_annotation.cpp: MIT-format annotation files (see wfdb_annotation.h for the byte layout).
#include "data/wfdb_annotation.h"

#include <array>
#include <limits>

#include "data/reader_util.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

namespace {

// Mnemonics of codes 0..49 (<wfdb/ecgcodes.h>, annstr); "" where the code has none.
constexpr std::array<std::string_view, 50> kMnemonics = {
    " ",  "N", "L", "R", "a", "V", "F", "J", "A", "S",   // 0-9
    "E",  "j", "/", "Q", "~", "",  "|", "",  "s", "T",   // 10-19
    "*",  "D", "\"", "=", "p", "B", "^", "t", "+", "u",  // 20-29
    "?",  "!", "[", "]", "e", "n", "@", "x", "f", "(",   // 30-39
    ")",  "r", "",  "",  "",  "",  "",  "",  "",  "",    // 40-49
};

uint16_t word_at(std::string_view b, size_t i) {
  return static_cast<uint16_t>(static_cast<unsigned char>(b[i]) | (static_cast<unsigned char>(b[i + 1]) << 8));
}

[[noreturn]] void cut(const std::string& source, size_t offset, const std::string& what) {
  throw Error(source + ": annotation file cut at byte offset " + std::to_string(offset) + ": " + what);
}

}  // namespace

std::string_view annotation_mnemonic(int code) {
  if (code < 0 || code >= static_cast<int>(kMnemonics.size())) return "";
  return kMnemonics[static_cast<size_t>(code)];
}

int annotation_code(std::string_view mnemonic) {
  if (mnemonic.empty()) return -1;
  for (size_t c = 1; c < kMnemonics.size(); ++c)
    if (kMnemonics[c] == mnemonic) return static_cast<int>(c);
  return mnemonic == " " ? 0 : -1;
}

bool is_beat_annotation(int code) {
  switch (code) {
    case ann::NORMAL: case ann::LBBB: case ann::RBBB: case ann::ABERR: case ann::PVC:
    case ann::FUSION: case ann::NPC: case ann::APC: case ann::SVPB: case ann::VESC:
    case ann::NESC: case ann::PACE: case ann::UNKNOWN: case ann::BBB: case ann::LEARN:
    case ann::AESC: case ann::SVESC: case ann::NAPC: case ann::PFUS: case ann::RONT:
      return true;
    default:
      return false;
  }
}

std::vector<WfdbAnnotation> parse_wfdb_annotations(std::string_view b, const std::string& source) {
  std::vector<WfdbAnnotation> out;
  int64_t time = 0;
  int num = 0, chan = 0;  // persistent fields
  size_t i = 0;
  while (i < b.size()) {
    if (i + 2 > b.size()) cut(source, i, "a lone byte where a 16-bit word should start");
    const size_t at = i;
    const uint16_t w = word_at(b, i);
    i += 2;
    const int a = w >> 10, data = w & 0x3ff;
    if (w == 0) break;  // end marker
    if (a == ann::SKIP) {
      if (i + 4 > b.size()) cut(source, i, "inside the 4-byte interval of a SKIP word at offset " + std::to_string(at));
      const uint32_t hi = word_at(b, i), lo = word_at(b, i + 2);
      i += 4;
      const int32_t interval = static_cast<int32_t>((hi << 16) | lo);
      time += interval;
      continue;
    }
    if (a == ann::NUM || a == ann::SUB || a == ann::CHN || a == ann::AUX) {
      if (out.empty())
        throw Error(source + ": byte offset " + std::to_string(at) + ": " +
                    (a == ann::NUM ? "NUM" : a == ann::SUB ? "SUB" : a == ann::CHN ? "CHN" : "AUX") +
                    " word before the first annotation");
      WfdbAnnotation& last = out.back();
      if (a == ann::NUM) {
        num = data;
        last.num = data;
      } else if (a == ann::SUB) {
        last.subtype = data;
      } else if (a == ann::CHN) {
        chan = data;
        last.channel = data;
      } else {
        const size_t len = static_cast<size_t>(data), padded = len + (len & 1);
        if (i + padded > b.size())
          cut(source, b.size(), "inside an AUX string of " + std::to_string(len) + " bytes starting at offset " +
                                    std::to_string(i) + " (annotation " + std::to_string(out.size() - 1) + ")");
        last.aux.assign(b.data() + i, len);
        i += padded;
      }
      continue;
    }
    // An annotation of code a (0..58), `data` samples after the previous one.
    time += data;
    if (time < 0)
      throw Error(source + ": byte offset " + std::to_string(at) + ": annotation time " + std::to_string(time) +
                  " is negative (a SKIP interval went before the record start)");
    if (time > (int64_t{1} << 53))
      throw Error(source + ": byte offset " + std::to_string(at) + ": annotation time " + std::to_string(time) +
                  " is absurd");
    WfdbAnnotation an;
    an.sample = time;
    an.code = a;
    an.num = num;
    an.channel = chan;
    out.push_back(std::move(an));
  }
  return out;
}

std::vector<WfdbAnnotation> read_wfdb_annotations(const std::string& path) {
  std::string bytes = detail::read_file(path, "WFDB annotation file", int64_t{1} << 30);
  return parse_wfdb_annotations(bytes, path);
}

std::string encode_wfdb_annotations(const std::vector<WfdbAnnotation>& anns) {
  std::string out;
  auto put_word = [&](uint32_t w) {
    out.push_back(static_cast<char>(w & 0xff));
    out.push_back(static_cast<char>((w >> 8) & 0xff));
  };
  int64_t prev = 0;
  int num = 0, chan = 0;
  for (size_t k = 0; k < anns.size(); ++k) {
    const WfdbAnnotation& an = anns[k];
    const std::string who = "encode_wfdb_annotations: annotation " + std::to_string(k);
    if (an.sample < 0) throw Error(who + ": sample " + std::to_string(an.sample) + " is negative");
    if (an.sample < prev)
      throw Error(who + ": sample " + std::to_string(an.sample) + " comes before the previous annotation's " +
                  std::to_string(prev) + " (annotations must be sorted)");
    if (an.code < 0 || an.code >= ann::SKIP)
      throw Error(who + ": code " + std::to_string(an.code) + " is outside [0, 58]");
    auto check10 = [&](int v, const char* field) {
      if (v < 0 || v > 1023) throw Error(who + ": " + field + " " + std::to_string(v) + " is outside [0, 1023]");
    };
    check10(an.subtype, "subtype");
    check10(an.channel, "channel");
    check10(an.num, "num");
    if (an.aux.size() > 255) throw Error(who + ": aux string of " + std::to_string(an.aux.size()) + " bytes (max 255)");
    int64_t diff = an.sample - prev;
    if (diff > 1023) {
      if (diff > std::numeric_limits<int32_t>::max())
        throw Error(who + ": interval " + std::to_string(diff) + " does not fit a 32-bit SKIP");
      put_word(static_cast<uint32_t>(ann::SKIP) << 10);
      const uint32_t d = static_cast<uint32_t>(diff);
      put_word(d >> 16);
      put_word(d & 0xffff);
      diff = 0;
    }
    if (an.code == 0 && diff == 0)
      throw Error(who + ": code 0 (NOTQRS) at time difference 0 would be written as the end marker");
    put_word((static_cast<uint32_t>(an.code) << 10) | static_cast<uint32_t>(diff));
    if (an.subtype != 0) put_word((static_cast<uint32_t>(ann::SUB) << 10) | static_cast<uint32_t>(an.subtype));
    if (an.channel != chan) {
      put_word((static_cast<uint32_t>(ann::CHN) << 10) | static_cast<uint32_t>(an.channel));
      chan = an.channel;
    }
    if (an.num != num) {
      put_word((static_cast<uint32_t>(ann::NUM) << 10) | static_cast<uint32_t>(an.num));
      num = an.num;
    }
    if (!an.aux.empty()) {
      put_word((static_cast<uint32_t>(ann::AUX) << 10) | static_cast<uint32_t>(an.aux.size()));
      out += an.aux;
      if (an.aux.size() % 2 == 1) out.push_back('\0');
    }
    prev = an.sample;
  }
  put_word(0);  // end marker
  return out;
}

void write_wfdb_annotations(const std::string& path, const std::vector<WfdbAnnotation>& annotations) {
  detail::write_file(path, encode_wfdb_annotations(annotations), "WFDB annotation file");
}

}  // namespace sleepnet::data
