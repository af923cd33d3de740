# Valgrind variants of integration tests (docs/testing.md). Included from
# tests/integration/CMakeLists.txt; only with -DPCS_VALGRIND=ON (scripts/test.sh's valgrind
# stage), since memcheck makes the daemon about 20 times slower.
#
# pcs_valgrind_tests(test ...) registers valgrind_<test> for each test target: the same test
# binary with PCS_BUILD_DIR set to an overlay of the build directory whose server/pcsecretd
# runs the real one under memcheck, and everything else (client/, sdk/, tests/, common/) links
# back to the build. No source changes: the harness already finds the daemon through
# PCS_BUILD_DIR.
if(NOT PCS_VALGRIND)
  function(pcs_valgrind_tests)
  endfunction()
  return()
endif()

find_program(PCS_VALGRIND_BIN valgrind REQUIRED)
set(PCS_VALGRIND_DIR ${CMAKE_BINARY_DIR}/valgrind)
set(PCS_VALGRIND_LOGS ${PCS_VALGRIND_DIR}/logs)
file(MAKE_DIRECTORY ${PCS_VALGRIND_DIR}/server ${PCS_VALGRIND_LOGS})
foreach(part client sdk tests common)
  file(CREATE_LINK ${CMAKE_BINARY_DIR}/${part} ${PCS_VALGRIND_DIR}/${part} SYMBOLIC)
endforeach()
set(PCS_VALGRIND_EXE ${PCS_VALGRIND_BIN})
set(PCS_VALGRIND_SUPP ${PROJECT_SOURCE_DIR}/tests/valgrind/pcsecretd.supp)
set(PCS_PCSECRETD $<TARGET_FILE:pcsecretd>)
# configure_file cannot set the mode on CMake 3.18: configure, then copy with permissions.
configure_file(${PROJECT_SOURCE_DIR}/tests/valgrind/pcsecretd.in
  ${CMAKE_CURRENT_BINARY_DIR}/pcsecretd.valgrind.in @ONLY)
file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/pcsecretd.valgrind
  INPUT ${CMAKE_CURRENT_BINARY_DIR}/pcsecretd.valgrind.in)
add_custom_target(pcsecretd_valgrind_wrapper ALL
  COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_CURRENT_BINARY_DIR}/pcsecretd.valgrind
    ${PCS_VALGRIND_DIR}/server/pcsecretd
  COMMAND chmod 0755 ${PCS_VALGRIND_DIR}/server/pcsecretd
  DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/pcsecretd.valgrind
  VERBATIM)

function(pcs_valgrind_tests)
  foreach(t ${ARGN})
    if(NOT TARGET ${t})
      continue()
    endif()
    add_test(NAME valgrind_${t} COMMAND ${t})
    set_tests_properties(valgrind_${t} PROPERTIES
      ENVIRONMENT "PCS_BUILD_DIR=${PCS_VALGRIND_DIR};PCS_SOURCE_DIR=${PROJECT_SOURCE_DIR};PCS_TEST_CONNINFO=${PCS_TEST_CONNINFO};PCS_UNDER_VALGRIND=1"
      FIXTURES_REQUIRED pg
      LABELS valgrind
      TIMEOUT 900)
    add_dependencies(${t} pcsecretd_valgrind_wrapper)
  endforeach()
endfunction()
