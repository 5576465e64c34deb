// version.h: identifies the layout of run directories, so a run of another version is refused clearly.
#pragma once

namespace sleepnet::screening {
const char* run_format_version();
}  // namespace sleepnet::screening
