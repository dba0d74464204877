# Writes the manual page llamactl(1) from the built binary: `llamactl __man`
# prints it from the same CLI11 definitions as --help (cmd/man.cpp).
# usage: cmake -DEXE=path/to/llamactl -DOUTPUT=path/to/llamactl.1 -P man_page.cmake
execute_process(COMMAND ${EXE} __man OUTPUT_FILE ${OUTPUT}.tmp RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp)
  message(FATAL_ERROR "'${EXE} __man' failed (${rc}): ${err}")
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
