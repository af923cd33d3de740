# pgtest: helpers for tests against the private PostgreSQL cluster (tests/pg_harness.sh).
# Included from tests/CMakeLists.txt; link it with `LIBS pgtest` in pcs_add_test(... PG).
add_library(pgtest STATIC ${CMAKE_CURRENT_LIST_DIR}/pgtest.c)
target_include_directories(pgtest PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(pgtest PUBLIC PkgConfig::LIBPQ)
target_compile_options(pgtest PRIVATE ${PCS_WARNINGS})
