# fab_add_check_test(NAME <name> SOURCES <src...> [LABELS <l...>] [TIMEOUT <s>] [LIBS <lib...>])
# Builds one test executable and registers it with ctest.  Exit code 77 means
# "skipped" (a missing kernel feature), never "passed".
find_package(PkgConfig REQUIRED)
pkg_check_modules(CHECK REQUIRED IMPORTED_TARGET check)

function(fab_add_check_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LABELS;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE fab PkgConfig::CHECK Threads::Threads ${T_LIBS})
  target_compile_definitions(${T_NAME} PRIVATE _GNU_SOURCE)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests/common)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES
    TIMEOUT ${T_TIMEOUT}
    LABELS "${T_LABELS}"
    SKIP_RETURN_CODE 77
    ENVIRONMENT "CK_DEFAULT_TIMEOUT=${T_TIMEOUT}")
endfunction()
