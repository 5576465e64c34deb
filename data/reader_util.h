// reader_util.h: small helpers shared by the file-format readers (WFDB, EDF, UCDDB text).
// Internal to data/: strict number parsing (the whole token must be a number, no locale), trimming,
// line splitting and whole-file reading with errors that name the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sleepnet::data::detail {

// Whole token as a decimal integer (optional leading '+' or '-'); nullopt otherwise or on overflow.
std::optional<int64_t> parse_int(std::string_view s);
// Whole token as a finite decimal number ("1", "-2.5", "1e3", ".5"); nullopt for NaN, inf, garbage.
std::optional<double> parse_double(std::string_view s);

// Removes leading/trailing spaces, tabs, CR, LF and (for EDF fields) NUL bytes.
std::string_view trim(std::string_view s);
// Splits on '\n', dropping one trailing '\r' per line. A final empty line (text ending in '\n') is
// not returned.
std::vector<std::string_view> split_lines(std::string_view text);
// Whitespace-separated tokens (spaces and tabs).
std::vector<std::string_view> split_ws(std::string_view s);

// The bytes of a file; throws sleepnet::Error "<path>: cannot open <what>" when it cannot be read.
// Files larger than `max_bytes` are refused (a header or annotation file is never gigabytes).
std::string read_file(const std::string& path, const char* what, int64_t max_bytes = int64_t{1} << 31);
// Writes bytes to a file (binary); throws naming the file on failure.
void write_file(const std::string& path, std::string_view bytes, const char* what);

// printf-style %g with enough digits to round-trip (shortest representation).
std::string format_number(double x);
// A short, printable rendering of a token for error messages ("'abc'", non-printable bytes as \xNN,
// cut after 40 characters).
std::string quote(std::string_view s);

}  // namespace sleepnet::data::detail
