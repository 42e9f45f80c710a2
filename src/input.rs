//! Every input file of a command through one gate: specs, runtime profiles a spec names, `--catalog`
//! files and `import-model`'s JSON are regular files of at most `MAX_FILE_BYTES` read as UTF-8, each
//! recorded (`output::write` refuses to overwrite one); `--weights` folders are checked the same way.
//! A file's problems are an `InputError`. This module reads and validates; it prints nothing.

use std::cell::{OnceCell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use planner::catalog::{Catalog, CatalogFile, RuntimeProfile};
use planner::spec::{self, Spec};

/// Identity of a file (device and inode), the same through every path and link that reaches it.
pub type FileId = (u64, u64);

/// Every file this process read as input, by identity and as named.
static INPUTS: Mutex<Vec<(FileId, PathBuf)>> = Mutex::new(Vec::new());

pub fn id_of(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Records that `path` (whose metadata is `meta`) was read as an input of this command.
pub fn record_input(path: &Path, meta: &std::fs::Metadata) {
    let mut inputs = INPUTS.lock().unwrap_or_else(|e| e.into_inner());
    let id = id_of(meta);
    if !inputs.iter().any(|(i, _)| *i == id) {
        inputs.push((id, path.to_path_buf()));
    }
}

/// The input of this command whose identity is `id`, as it was named, if any.
pub fn read_as(id: FileId) -> Option<PathBuf> {
    let inputs = INPUTS.lock().unwrap_or_else(|e| e.into_inner());
    inputs
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, p)| p.clone())
}

/// The built-in catalog plus the files of `--catalog DIR`.
pub fn load_catalog(dir: Option<&Path>) -> Result<Catalog> {
    let mut c = Catalog::embedded();
    let Some(dir) = dir else { return Ok(c) };
    if !dir.is_dir() {
        bail!("--catalog {}: not a folder", shown(dir));
    }
    let mut found = false;
    for (name, kind) in [
        ("gpus.yaml", CatalogFile::Gpus),
        ("models.yaml", CatalogFile::Models),
    ] {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        found = true;
        let shown = shown(&path);
        let text = read_file(&path).map_err(|e| anyhow::anyhow!("cannot read {shown}: {e}"))?;
        c.add_user_file(kind, &shown, &text).map_err(|e| {
            let mut msg = format!(
                "{} problem{} in {shown}",
                e.problems.len(),
                if e.problems.len() == 1 { "" } else { "s" }
            );
            for p in &e.problems {
                msg.push_str(&format!("\n  {p}"));
            }
            anyhow::anyhow!(msg)
        })?;
    }
    if !found {
        bail!(
            "--catalog {}: holds neither gpus.yaml nor models.yaml",
            shown(dir)
        );
    }
    Ok(c)
}

/// Largest input file read (spec, runtime profile, catalog file, `config.json`), bytes: the
/// biggest example spec is under 2 kB, the biggest published `config.json` under 10 kB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A path as it may be printed: control characters escaped, long paths cut.
pub fn shown(path: &Path) -> String {
    spec::echo(&path.to_string_lossy(), 200)
}

/// Reads a regular file of at most `MAX_FILE_BYTES` as UTF-8: a FIFO, a device or a folder is
/// refused before it is opened (a FIFO would block, `/dev/zero` never ends). The one gate of
/// every input file — specs, runtime profiles, catalog files, `import-model`'s JSON — and the
/// record of what this command read (`output::write` refuses to overwrite any of it).
pub fn read_file(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_FILE_BYTES} bytes an input file may have",
            meta.len()
        ));
    }
    record_input(path, &meta);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("more than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

/// The largest safetensors file `verify --weights` reads (64 GB: one shard of a 32B model in
/// BF16 with room to spare; the executor reads each file whole into memory).
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 64_000_000_000;

/// Checks the `*.safetensors` files the executor will read from a `--weights` folder (the
/// `transformer/`, `vae/` and `text_encoder/` subfolders) as `read_file` checks a spec: regular
/// files only (a FIFO, a device or a folder named `.safetensors` is refused before anything
/// opens it), each at most `MAX_WEIGHTS_FILE_BYTES`. A missing subfolder is left to the executor.
pub fn check_weights_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("--weights {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("--weights {}: not a folder", dir.display());
    }
    for component in ["text_encoder", "transformer", "vae"] {
        let Ok(entries) = std::fs::read_dir(dir.join(component)) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        for f in files {
            let meta =
                std::fs::metadata(&f).with_context(|| format!("--weights {}", f.display()))?;
            if !meta.is_file() {
                bail!("--weights {}: not a regular file", f.display());
            }
            if meta.len() > MAX_WEIGHTS_FILE_BYTES {
                bail!(
                    "--weights {}: {} bytes is more than the {MAX_WEIGHTS_FILE_BYTES} bytes a weights file may have",
                    f.display(),
                    meta.len()
                );
            }
        }
    }
    Ok(())
}

/// Problems in an input file: printed one per line as text, or as JSON on stderr.
#[derive(Debug, serde::Serialize)]
pub struct InputError {
    /// The file.
    pub file: String,
    /// What was wrong, in file order.
    pub problems: Vec<spec::Problem>,
    /// The first line of the report.
    #[serde(skip)]
    pub summary: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)?;
        for p in &self.problems {
            let sep = if p.location.is_some() { ":" } else { ": " };
            write!(f, "\n  {}{sep}{p}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

pub fn spec_problems(path: &Path, problems: Vec<spec::Problem>) -> InputError {
    let n = problems.len();
    InputError {
        file: shown(path),
        summary: if n > spec::MAX_PROBLEMS {
            format!(
                "more than {} problems in {}; the first {} are listed",
                spec::MAX_PROBLEMS,
                shown(path),
                spec::MAX_PROBLEMS
            )
        } else {
            format!(
                "{n} problem{} in {}",
                if n == 1 { "" } else { "s" },
                shown(path)
            )
        },
        problems,
    }
}

/// Runtime profile files a spec names (`runtime: ./profile.yaml`), read before the spec is
/// validated so that the spec can borrow them: `(name as written, profile or its problems)`.
pub type Profiles = OnceCell<Vec<(String, std::result::Result<RuntimeProfile, Vec<String>>)>>;

/// Reads and validates a spec against `catalog`. The spec borrows from `catalog` and `profiles`.
pub fn read_spec<'c>(
    path: &Path,
    catalog: &'c Catalog,
    profiles: &'c Profiles,
) -> Result<Spec<'c>> {
    let text =
        read_file(path).map_err(|e| anyhow::anyhow!("cannot read spec {}: {e}", shown(path)))?;
    parse_spec(&text, path, catalog, profiles)
}

/// Reads one runtime profile file named in a spec in `dir`.
fn read_profile(dir: &Path, name: &str) -> std::result::Result<RuntimeProfile, Vec<String>> {
    let file = dir.join(name);
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        return Err(vec![format!(
            "runtime profile {}: a profile file's name ends in .yaml or .yml",
            shown(&file)
        )]);
    }
    let text = read_file(&file)
        .map_err(|e| vec![format!("cannot read runtime profile {}: {e}", shown(&file))])?;
    RuntimeProfile::from_yaml(&text).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("runtime profile {}: {e}", shown(&file)))
            .collect()
    })
}

/// Validates spec `text` as if read from `path` (profile files resolve beside it; problems name it).
pub fn parse_spec<'c>(
    text: &str,
    path: &Path,
    catalog: &'c Catalog,
    profiles: &'c Profiles,
) -> Result<Spec<'c>> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    // First pass: which profile files does it name? (Validation asks the loader for each.)
    let named = RefCell::new(Vec::new());
    let _ = spec::parse_with(
        text,
        &|name: &str| {
            named.borrow_mut().push(name.to_string());
            Err(Vec::new())
        },
        catalog,
    );
    let loaded = profiles.get_or_init(|| {
        named
            .into_inner()
            .into_iter()
            .map(|name| {
                let p = read_profile(&dir, &name);
                (name, p)
            })
            .collect()
    });
    let load = |name: &str| -> std::result::Result<&'c RuntimeProfile, Vec<String>> {
        match loaded.iter().find(|(n, _)| n == name) {
            Some((_, Ok(p))) => Ok(p),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(vec![format!(
                "runtime profile {} was not read",
                spec::echo(name, 64)
            )]),
        }
    };
    spec::parse_with(text, &load, catalog).map_err(|e| spec_problems(path, e.problems).into())
}

/// Reads an `import-model` input through the same gate as every input file.
pub fn read(path: &Path) -> Result<String> {
    read_file(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", shown(path)))
}
