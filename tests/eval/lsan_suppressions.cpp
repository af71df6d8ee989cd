// The sanitizer build's leak checker: fontconfig (loaded by PLplot's cairo driver for the compare
// chart) keeps its font cache until the process ends, by design. Those are not our leaks.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n";
}
