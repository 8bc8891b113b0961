# cmake/DaggerFeatures.cmake - one line per optional feature, printed once as a build summary.
#
# dagger_feature(<name> <what> <found-var> <why-missing>) records whether <found-var> is true;
# dagger_feature_summary() prints what is built and what is not (with the reason, once each).
# A required dependency fails at its find_package(... REQUIRED) instead; the summary only
# lists the optional ones.
set_property(GLOBAL PROPERTY DAGGER_FEATURE_LINES "")

function(dagger_feature name what found_var why)
  if(${found_var})
    set(line "  [x] ${name}: ${what}")
  else()
    set(line "  [ ] ${name}: ${what} -- not built: ${why}")
  endif()
  set_property(GLOBAL APPEND PROPERTY DAGGER_FEATURE_LINES "${line}")
endfunction()

function(dagger_feature_summary)
  get_property(lines GLOBAL PROPERTY DAGGER_FEATURE_LINES)
  set(msg "dagger ${PROJECT_VERSION} features:")
  foreach(l IN LISTS lines)
    string(APPEND msg "\n${l}")
  endforeach()
  message(STATUS "${msg}")
endfunction()
