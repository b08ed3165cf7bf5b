// The Python extension module pyengine._C. Importing it loads the op library
// (TORCH_LIBRARY registrations run at load time); the functions below report
// how the library was built and hold process-wide settings.
#include <omp.h>
#include <pybind11/pybind11.h>

#include "common/checks.h"

namespace {
bool cuda_compiled() {
#ifdef PYENGINE_WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyengine compiled kernels";
  m.attr("torch_version") = PYENGINE_TORCH_VERSION;
  m.def("cuda_compiled", &cuda_compiled, "True if the CUDA kernels were compiled into this build.");
  m.def("openmp_max_threads", [] { return omp_get_max_threads(); }, "OpenMP's maximum thread count.");
  m.def("input_checks_enabled", &pyengine::input_checks_enabled);
  m.def("set_input_checks_enabled", &pyengine::set_input_checks_enabled, pybind11::arg("enabled"));
}
