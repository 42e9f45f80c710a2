//! Every external name `export` may emit, with the file of the project that defines it (read
//! in diffusers at 58eb52c, 2026-08-23, xDiT at 175e0bf, 2026-07-14, SGLang at 011b8ca (server
//! arguments) and 00ae37c (sampling arguments), and cache-dit at f86744a). A test holds every
//! call in every exported snippet to this list.

// The lists are read by the tests that hold every export to them (and XDIT_MODELS by the export).
#![cfg_attr(not(test), allow(dead_code))]

/// A name and where it is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// The called name (last path segment for methods), or the command-line flag.
    pub name: &'static str,
    /// Repository and file that defines it.
    pub source: &'static str,
}

const fn api(name: &'static str, source: &'static str) -> Api {
    Api { name, source }
}

/// Python calls of the diffusers snippets: diffusers, torch, torchao, and Python itself.
pub const DIFFUSERS: &[Api] = &[
    api(
        "from_pretrained",
        "diffusers src/diffusers/pipelines/pipeline_utils.py, models/modeling_utils.py",
    ),
    api(
        "enable_layerwise_casting",
        "diffusers src/diffusers/models/modeling_utils.py",
    ),
    api(
        "enable_group_offload",
        "diffusers src/diffusers/models/modeling_utils.py",
    ),
    api(
        "enable_model_cpu_offload",
        "diffusers src/diffusers/pipelines/pipeline_utils.py",
    ),
    api(
        "enable_sequential_cpu_offload",
        "diffusers src/diffusers/pipelines/pipeline_utils.py",
    ),
    api(
        "set_attention_backend",
        "diffusers src/diffusers/models/modeling_utils.py (names: models/attention_dispatch.py AttentionBackendName)",
    ),
    api(
        "enable_cache",
        "diffusers src/diffusers/models/cache_utils.py",
    ),
    api(
        "FirstBlockCacheConfig",
        "diffusers src/diffusers/hooks/first_block_cache.py",
    ),
    api(
        "enable_parallelism",
        "diffusers src/diffusers/models/modeling_utils.py",
    ),
    api(
        "ContextParallelConfig",
        "diffusers src/diffusers/models/_modeling_parallel.py",
    ),
    api(
        "enable_tiling",
        "diffusers src/diffusers/models/autoencoders/vae.py",
    ),
    api(
        "encode_prompt",
        "diffusers src/diffusers/pipelines/flux2/pipeline_flux2_klein.py, flux2/pipeline_flux2.py, flux/pipeline_flux.py",
    ),
    api(
        "TorchAoConfig",
        "diffusers src/diffusers/quantizers/quantization_config.py",
    ),
    api(
        "NVIDIAModelOptConfig",
        "diffusers src/diffusers/quantizers/quantization_config.py",
    ),
    api(
        "Float8DynamicActivationFloat8WeightConfig",
        "torchao torchao/quantization (named in diffusers' TorchAoConfig docstring)",
    ),
    api(
        "pipe",
        "the pipeline's __call__ (diffusers pipelines/*/pipeline_*.py)",
    ),
    api(
        "to",
        "torch torch/nn/modules/module.py (Module.to), DiffusionPipeline.to",
    ),
    api("device", "torch torch.device"),
    api("compile", "torch torch.compile (inductor)"),
    api("Generator", "torch torch.Generator"),
    api("manual_seed", "torch torch.Generator.manual_seed"),
    api(
        "init_process_group",
        "torch torch/distributed/distributed_c10d.py",
    ),
    api("get_rank", "torch torch/distributed/distributed_c10d.py"),
    api(
        "destroy_process_group",
        "torch torch/distributed/distributed_c10d.py",
    ),
    api("set_device", "torch torch/cuda/__init__.py"),
    api("save", "PIL PIL/Image.py (Image.save)"),
    api("generate", "defined by the snippet itself"),
    api("encode", "defined by the snippet itself"),
    api("range", "Python builtin"),
    api("enumerate", "Python builtin"),
];

/// Pipeline and transformer classes the snippets load.
pub const DIFFUSERS_CLASSES: &[Api] = &[
    api(
        "Flux2KleinPipeline",
        "diffusers src/diffusers/pipelines/flux2/pipeline_flux2_klein.py",
    ),
    api(
        "Flux2KleinKVPipeline",
        "diffusers src/diffusers/pipelines/flux2/pipeline_flux2_klein_kv.py",
    ),
    api(
        "Flux2Pipeline",
        "diffusers src/diffusers/pipelines/flux2/pipeline_flux2.py",
    ),
    api(
        "FluxPipeline",
        "diffusers src/diffusers/pipelines/flux/pipeline_flux.py",
    ),
    api(
        "FluxKontextPipeline",
        "diffusers src/diffusers/pipelines/flux/pipeline_flux_kontext.py",
    ),
    api(
        "Flux2Transformer2DModel",
        "diffusers src/diffusers/models/transformers/transformer_flux2.py",
    ),
    api(
        "FluxTransformer2DModel",
        "diffusers src/diffusers/models/transformers/transformer_flux.py",
    ),
];

/// diffusers' attention backend names (`AttentionBackendName` in models/attention_dispatch.py).
pub const DIFFUSERS_ATTENTION: &[&str] = &["native", "flash", "_native_cudnn", "_native_math"];

/// Flags of xDiT's model runner (`xFuserArgs.add_runner_args`, xfuser/config/args.py) and the
/// environment variable the FLUX.2 runners read for the FBCache threshold (xfuser/envs.py).
pub const XDIT: &[Api] = &[
    api("--model", "xDiT xfuser/config/args.py (add_runner_args)"),
    api("--height", "xDiT xfuser/config/args.py (add_runner_args)"),
    api("--width", "xDiT xfuser/config/args.py (add_runner_args)"),
    api(
        "--num_inference_steps",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--batch_size",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api("--prompt", "xDiT xfuser/config/args.py (add_runner_args)"),
    api(
        "--ulysses_degree",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--ring_degree",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--fully_shard_degree",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--use_parallel_vae",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--enable_tiling",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--use_torch_compile",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--attention_backend",
        "xDiT xfuser/config/args.py; names: xfuser/core/distributed/attention_backend.py AttentionBackendType",
    ),
    api(
        "--use_fp8_gemms",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--use_fp4_gemms",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--enable_model_cpu_offload",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api(
        "--use_fbcache",
        "xDiT xfuser/config/args.py (add_runner_args)",
    ),
    api("XDIT_FBCACHE_THRESH", "xDiT xfuser/envs.py"),
    api(
        "--nproc_per_node",
        "torch torchrun (torch/distributed/run.py)",
    ),
    api(
        "-m",
        "torch torchrun --module (torch/distributed/run.py); module xfuser/runner.py",
    ),
];

/// xDiT attention backends (`AttentionBackendType` member names; the runner upper-cases the flag).
pub const XDIT_ATTENTION: &[&str] = &["SDPA", "FLASH", "CUDNN", "SDPA_MATH"];

/// Models xDiT's runner registers (`@register_model`, runner_models/flux.py), with what each
/// declares in `ModelCapabilities`: FP8 GEMMs, FP4 GEMMs, FBCache.
pub const XDIT_MODELS: &[(&str, bool, bool, bool)] = &[
    ("black-forest-labs/FLUX.1-dev", true, false, false),
    ("black-forest-labs/FLUX.2-dev", true, true, true),
    ("black-forest-labs/FLUX.2-klein-9B", true, false, true),
    ("black-forest-labs/FLUX.2-klein-4B", true, false, true),
];

/// Environment variables SGLang-Diffusion reads to run cache-dit's DBCache on its own pipelines
/// (`envs.py`'s `environment_variables`: Fn, Bn, warm-up, residual threshold, cap on cached steps
/// in a row).
pub const SGLANG_ENV: &[Api] = &[
    api(
        "SGLANG_CACHE_DIT_ENABLED",
        "sgl-project/sglang@f3b0fcd573b6afafedc611cbb09f105bda5a723d python/sglang/multimodal_gen/envs.py (environment_variables)",
    ),
    api(
        "SGLANG_CACHE_DIT_FN",
        "sgl-project/sglang@f3b0fcd573b6afafedc611cbb09f105bda5a723d python/sglang/multimodal_gen/envs.py (DBCache F parameter)",
    ),
    api(
        "SGLANG_CACHE_DIT_BN",
        "sgl-project/sglang@f3b0fcd573b6afafedc611cbb09f105bda5a723d python/sglang/multimodal_gen/envs.py (DBCache B parameter)",
    ),
    api(
        "SGLANG_CACHE_DIT_WARMUP",
        "sgl-project/sglang@f3b0fcd573b6afafedc611cbb09f105bda5a723d python/sglang/multimodal_gen/envs.py (DBCache W parameter, default 4)",
    ),
    api(
        "SGLANG_CACHE_DIT_RDT",
        "sgl-project/sglang@f3b0fcd573b6afafedc611cbb09f105bda5a723d python/sglang/multimodal_gen/envs.py (residual difference threshold)",
    ),
    api(
        "SGLANG_CACHE_DIT_MC",
        "sgl-project/sglang@f3b0fcd573b6afafedc611cbb09f105bda5a723d python/sglang/multimodal_gen/envs.py (maximum continuous cached steps, default 3)",
    ),
];

/// Flags of the `sglang generate` command line (`sglang generate`: python/sglang/cli/generate.py).
/// `--attention-backend` takes `fa` or `torch_sdpa` (its help text, same file).
pub const SGLANG: &[Api] = &[
    api(
        "--model-path",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--num-gpus",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--tp-size",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args; _adjust_parallelism gives the GPUs left after tp_size x cfg to Ulysses)",
    ),
    api(
        "--ulysses-degree",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--ring-degree",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--enable-cfg-parallel",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--use-fsdp-inference",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--hsdp-shard-dim",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--dit-cpu-offload",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--text-encoder-cpu-offload",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--attention-backend",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--enable-torch-compile",
        "sgl-project/sglang@011b8cadfd8235e5bd592e8228702afdb8a02532 python/sglang/multimodal_gen/runtime/server_args.py (ServerArgs.add_cli_args)",
    ),
    api(
        "--prompt",
        "sgl-project/sglang@00ae37c817a8e1195bfa0cb3641f75d8a2d9f4a5 python/sglang/multimodal_gen/configs/sample/sampling_params.py (SamplingParams.add_cli_args)",
    ),
    api(
        "--width",
        "sgl-project/sglang@00ae37c817a8e1195bfa0cb3641f75d8a2d9f4a5 python/sglang/multimodal_gen/configs/sample/sampling_params.py (SamplingParams.add_cli_args)",
    ),
    api(
        "--height",
        "sgl-project/sglang@00ae37c817a8e1195bfa0cb3641f75d8a2d9f4a5 python/sglang/multimodal_gen/configs/sample/sampling_params.py (SamplingParams.add_cli_args)",
    ),
    api(
        "--num-inference-steps",
        "sgl-project/sglang@00ae37c817a8e1195bfa0cb3641f75d8a2d9f4a5 python/sglang/multimodal_gen/configs/sample/sampling_params.py (SamplingParams.add_cli_args)",
    ),
    api(
        "--seed",
        "sgl-project/sglang@00ae37c817a8e1195bfa0cb3641f75d8a2d9f4a5 python/sglang/multimodal_gen/configs/sample/sampling_params.py (SamplingParams.add_cli_args)",
    ),
    api(
        "--num-outputs-per-prompt",
        "sgl-project/sglang@00ae37c817a8e1195bfa0cb3641f75d8a2d9f4a5 python/sglang/multimodal_gen/configs/sample/sampling_params.py (SamplingParams.add_cli_args)",
    ),
];

/// Python names of the cache-dit scripts (beside the diffusers ones).
pub const CACHE_DIT: &[Api] = &[
    api(
        "enable_cache",
        "vipshop/cache-dit@f86744af7daa0f569fe4324e73e3e50cebf70f4c src/cache_dit/caching/cache_interface.py (exported in src/cache_dit/__init__.py)",
    ),
    api(
        "DBCacheConfig",
        "vipshop/cache-dit@f86744af7daa0f569fe4324e73e3e50cebf70f4c src/cache_dit/caching/cache_contexts/cache_config.py (Fn_compute_blocks, Bn_compute_blocks, residual_diff_threshold, max_warmup_steps, max_continuous_cached_steps)",
    ),
    api(
        "ParallelismConfig",
        "vipshop/cache-dit@f86744af7daa0f569fe4324e73e3e50cebf70f4c src/cache_dit/distributed/config.py (ulysses_size, ring_size, tp_size, extra_parallel_modules; tensor-parallel plans in distributed/transformers/flux.py, flux2.py)",
    ),
];
