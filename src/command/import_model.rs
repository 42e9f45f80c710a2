//! `import-model`: a diffusers `config.json` (and its pipeline folder) as a `models.yaml` entry.

use std::path::{Path, PathBuf};

use anyhow::Result;
use planner::catalog::Catalog;

use super::{Context, Exit, Outcome};
use crate::input;

/// `import-model`'s options.
pub struct Args {
    /// `transformer/config.json` or the pipeline folder.
    pub path: PathBuf,
    /// Catalog id.
    pub id: Option<String>,
    /// Pipeline folder.
    pub pipeline: Option<PathBuf>,
    /// Hugging Face repository.
    pub repo: Option<String>,
    /// Default steps.
    pub steps: Option<u32>,
}

/// The entry: as text the models.yaml file itself (not wrapped); JSON/YAML the same entries.
pub fn run(cx: &Context, a: Args) -> Result<Outcome> {
    let entry = import_model(&a.path, a.id, a.pipeline, a.repo, a.steps, cx.catalog)?;
    Ok(Outcome::new(
        cx.unwrapped(&entry, || entry.to_yaml())?,
        Exit::Success,
    ))
}

/// `import-model`: finds the transformer config and the pipeline folder, reads them, and prints
/// the catalog entry.
pub fn import_model(
    path: &Path,
    id: Option<String>,
    pipeline: Option<PathBuf>,
    repo: Option<String>,
    steps: Option<u32>,
    c: &Catalog,
) -> Result<planner::catalog::import::ModelsFile> {
    use planner::catalog::import::{ImportOptions, PipelineFiles, import};
    let (config, folder) = if path.is_dir() {
        if path.join("model_index.json").exists() {
            (
                path.join("transformer/config.json"),
                Some(path.to_path_buf()),
            )
        } else {
            (path.join("config.json"), None)
        }
    } else {
        let above = path.parent().and_then(Path::parent).map(Path::to_path_buf);
        (
            path.to_path_buf(),
            above.filter(|d| d.join("model_index.json").exists()),
        )
    };
    let folder = pipeline.or(folder);
    let files = match &folder {
        None => None,
        Some(dir) => {
            let mut f = PipelineFiles {
                model_index: input::read(&dir.join("model_index.json"))?,
                ..PipelineFiles::default()
            };
            for name in ["text_encoder", "text_encoder_2", "text_encoder_3"] {
                let p = dir.join(name).join("config.json");
                if p.exists() {
                    f.text_encoders.push((name.to_string(), input::read(&p)?));
                }
            }
            let v = dir.join("vae/config.json");
            if v.exists() {
                f.vae = Some(input::read(&v)?);
            }
            Some(f)
        }
    };
    let id = id.unwrap_or_else(|| {
        folder
            .as_deref()
            .or_else(|| config.parent().and_then(Path::parent))
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().to_lowercase())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "imported-model".into())
    });
    let opts = ImportOptions { id, repo, steps };
    import(&input::read(&config)?, files.as_ref(), &opts, c)
        .map_err(|e| anyhow::anyhow!("{}: {e}", input::shown(&config)))
}
