# Project-wide warning flags, applied to seqit's own targets only.
set(SEQIT_WARNINGS -Wall -Wextra -Werror)
if(SEQIT_FUZZ)
  # The fuzz build uses clang, whose warnings differ from g++'s (the compiler the code is kept
  # warning-free with): shown, not fatal.
  set(SEQIT_WARNINGS -Wall -Wextra)
endif()

# seqit_module(<name> [PUBLIC deps...] [PRIVATE deps...])
# One static library per src/<name>/, built from its .cpp files; headers are included as "<name>/x.h".
function(seqit_module name)
  cmake_parse_arguments(ARG "" "" "PUBLIC;PRIVATE" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  add_library(seqit_${name} STATIC ${sources})
  target_include_directories(seqit_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(seqit_${name} PRIVATE ${SEQIT_WARNINGS})
  target_link_libraries(seqit_${name} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
endfunction()

# seqit_test(<module> [LIBS libs...] [LABELS labels...])
# One GoogleTest executable per tests/<module>/, every TEST registered with CTest (discovered at test time).
function(seqit_test module)
  cmake_parse_arguments(ARG "" "" "LIBS;LABELS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  add_executable(test_${module} ${sources} $<TARGET_OBJECTS:seqit_test_watchdog>)
  target_compile_options(test_${module} PRIVATE ${SEQIT_WARNINGS})
  target_link_libraries(test_${module} PRIVATE seqit_testing ${ARG_LIBS} GTest::gtest GTest::gmock)
  # Tests run the built `seqit` (CLI tests): building a test target builds it too.
  if(TARGET seqit)
    add_dependencies(test_${module} seqit)
  endif()
  set(labels ${module} ${ARG_LABELS})
  # A backstop only (a hang outside a test body): the watchdog (tests/common/watchdog.cpp) ends a
  # hung test after its own budget and names it.
  set(backstop 300)
  if(SEQIT_SANITIZE)
    set(backstop 1200)
  endif()
  gtest_discover_tests(test_${module}
    DISCOVERY_MODE PRE_TEST
    WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
    PROPERTIES LABELS "${labels}" ENVIRONMENT "SEQIT_BUILD_DIR=${PROJECT_BINARY_DIR}"
               TIMEOUT ${backstop})
endfunction()
