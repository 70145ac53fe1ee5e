//! The paths a Codex `apply_patch` call would write, read from the patch text the hook
//! receives (`*** Add File: p`, `*** Update File: p`, `*** Delete File: p`, `*** Move to: p`).
//! Pure text: the patch is the agent's, and is only read.

/// The paths the patch names, in order, each once.
pub fn paths(patch: &str) -> Vec<String> {
    const HEADERS: &[&str] = &[
        "*** Add File: ",
        "*** Update File: ",
        "*** Delete File: ",
        "*** Move to: ",
    ];
    let mut out: Vec<String> = Vec::new();
    for line in patch.lines() {
        let line = line.trim_start();
        for header in HEADERS {
            if let Some(path) = line.strip_prefix(header) {
                let path = path.trim().to_string();
                if !path.is_empty() && !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_of_a_patch_names_a_path() {
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+x\n*** Update File: b.txt\n*** Move to: c.txt\n@@\n-y\n+z\n*** Delete File: /abs/d.txt\n*** Add File: a.txt\n*** End Patch\n";
        assert_eq!(paths(patch), ["a.txt", "b.txt", "c.txt", "/abs/d.txt"]);
        assert!(paths("no patch here").is_empty());
    }
}
