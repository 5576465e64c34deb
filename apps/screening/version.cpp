// version.cpp: the format version of run directories and checkpoints written by the app.
#include "apps/screening/version.h"

namespace sleepnet::screening {
const char* run_format_version() { return "sleepnet-run-1"; }
}  // namespace sleepnet::screening
