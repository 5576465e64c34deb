// nn/kernels/blas_core.h: make sure OpenBLAS runs the sgemm kernels written for this CPU.
//
// OpenBLAS (a DYNAMIC_ARCH build, as Debian ships it) picks its kernels once, when the library is
// loaded, from the CPU model number. A CPU newer than the OpenBLAS release is not in its table, and
// the library falls back to its oldest x86-64 kernels: Debian 12's OpenBLAS 0.3.21 runs the SSE3
// "Prescott" sgemm on an AVX-512 Xeon of 2023 (family 6, model 207), at about half the speed of its
// own AVX-512 ("SkylakeX") kernels (bench/README.md). The library's documented way to choose is the
// environment variable OPENBLAS_CORETYPE, read only at load time, so a program that wants the right
// kernels must have it in its environment before it starts.
//
// select_blas_core(argv), called first thing in main(), does that: when the user has not set
// OPENBLAS_CORETYPE, and OpenBLAS chose kernels for a lower instruction-set level than the CPU
// reports (cpuid), it sets OPENBLAS_CORETYPE to the best matching core and re-executes the program
// (same arguments, same process id), once. Set SLEEPNET_BLAS_CORE=keep to keep OpenBLAS's choice.
// The results change only by float rounding (another summation order inside sgemm).
#pragma once

#include <string>

namespace sleepnet::kernels {

// The core OpenBLAS is running ("Prescott", "Haswell", "SkylakeX", ...).
std::string blas_core_name();

// The OPENBLAS_CORETYPE this CPU should run, from its instruction-set extensions: "SkylakeX"
// (AVX-512 F/CD/BW/DQ/VL), "Haswell" (AVX2 + FMA), "Sandybridge" (AVX) or "" (nothing better
// than SSE3).
std::string preferred_blas_core();

// `preferred` when it names kernels for a higher instruction-set level than `running` (both OpenBLAS
// core names), else "" (also when either name is unknown): better_core("Haswell", "SkylakeX") is
// "SkylakeX", better_core("SkylakeX", "Haswell") and better_core("Mystery", "SkylakeX") are "".
std::string better_core(const std::string& running, const std::string& preferred);

// When the user's OPENBLAS_CORETYPE holds OpenBLAS to kernels below what this CPU runs: the core it
// could run (the programs say so when they print the kernels in use; they never override a user's
// choice). "" otherwise.
std::string blas_core_held_back();

// What select_blas_core would do now, without doing it: the core to re-execute with, or "" when
// nothing is to be done (the user chose, the choice is already good, or the name is unknown).
std::string blas_core_upgrade();

// Re-executes the program with OPENBLAS_CORETYPE set when blas_core_upgrade() says so; returns
// (doing nothing) otherwise, or if the re-execution fails. Call before anything else in main().
void select_blas_core(char** argv);

}  // namespace sleepnet::kernels
