//! CUDA backend checks: without the feature the backend says it is not built; with it, the GPU
//! tests run where a driver is present and print loudly that they were skipped where not.

use executor::{BackendKind, ExecError, ModelDims, RunConfig};

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_cuda_is_a_clear_error() {
    let err = executor::run(&ModelDims::flux2_tiny(), &RunConfig::tiny(), BackendKind::Cuda).unwrap_err();
    assert!(matches!(err, ExecError::CudaNotEnabled));
    assert!(err.to_string().contains("not enabled in this build"));
    assert!(matches!(executor::calibrate(BackendKind::Cuda), Err(ExecError::CudaNotEnabled)));
}
