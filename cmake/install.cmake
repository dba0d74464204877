# What `cmake --install` lays out, and the packages CPack makes of it:
#   Linux:   a .deb and a .tar.gz (cpack in build/release)
#   Windows: a .zip (cpack in build/windows)
include(GNUInstallDirs)

# `cmake --install` and cpack package what was built, and do not build every
# target first (the Windows build dir builds only llamactl and its tests).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

if(WIN32)
  # One flat folder, as the README's Windows section and the Task Scheduler
  # XML files expect (C:\tools\llamactl.exe, C:\tools\llamactl.ps1).
  install(TARGETS llamactl RUNTIME DESTINATION .)
  install(FILES completions/llamactl.ps1 DESTINATION .)
  install(FILES contrib/windows/llamactl-keep-loaded.xml contrib/windows/llamactl-serve-at-logon.xml DESTINATION .)
  # To start from, and to try it without a GPU (LLAMACTL_GPU_FIXTURE).
  install(FILES contrib/examples/config.toml fixtures/two-idle-gpus.txt DESTINATION .)
  set(CPACK_GENERATOR ZIP)
else()
  install(TARGETS llamactl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  # The completions where each shell looks for a system's own.
  install(FILES completions/llamactl.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
          RENAME llamactl)
  install(FILES completions/_llamactl DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
  install(FILES completions/llamactl.fish DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d)
  if(LLAMACTL_MAN_PAGE)
    install(FILES ${LLAMACTL_MAN_PAGE} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  endif()
  install(FILES contrib/examples/config.toml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
  # lib/systemd/user under the prefix: /usr/lib/systemd/user for the .deb.
  install(FILES contrib/systemd/llamactl-serve.service contrib/systemd/llamactl-load@.service
          DESTINATION lib/systemd/user)
  # Saved nvidia-smi outputs for LLAMACTL_GPU_FIXTURE: two idle GPUs to try
  # llamactl without one, and the real captures the tests read.
  install(FILES fixtures/two-idle-gpus.txt DESTINATION ${CMAKE_INSTALL_DATADIR}/llamactl/fixtures)
  install(DIRECTORY fixtures/nvidia-smi DESTINATION ${CMAKE_INSTALL_DATADIR}/llamactl/fixtures)
  set(CPACK_GENERATOR DEB TGZ)
endif()

set(LLAMACTL_MAINTAINER "llamactl maintainers <maintainers@users.noreply.b-seed-60efdb7c.example>"
    CACHE STRING "Maintainer named in the packages")
set(CPACK_PACKAGE_NAME llamactl)
set(CPACK_PACKAGE_VENDOR llamactl)
set(CPACK_PACKAGE_CONTACT ${LLAMACTL_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "puts llama-server instances on the right NVIDIA GPUs, tracks them, and frees GPUs")
set(CPACK_PACKAGE_DESCRIPTION
    "llamactl reads the GPUs with nvidia-smi, starts llama.cpp's llama-server where a model fits, records each instance, and stops it again; serve answers OpenAI and Ollama clients for every configured model, loading and unloading on demand. Without NVIDIA GPUs it runs models on the CPU.")
# The binary is static (and stripped at link: -s): no runtime dependencies.
# llama-server is the user's own (llama.cpp is not in Debian 12), nvidia-smi
# comes with the driver.
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${LLAMACTL_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "nvidia-smi")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
include(CPack)
