//! Helpers shared by the planner's integration tests.

/// Every spec of `specs/` as (file name, text), sorted by name.
pub fn specs() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("specs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("spec"),
            )
        })
        .collect();
    out.sort();
    out
}
