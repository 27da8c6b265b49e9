//! Which paths on the node's disk the API may name. `put` reads a file and `get` writes one
//! as the node's user, so an API client could otherwise read the node's key or the Core
//! secret in its environment: paths must lie under `[storage] allowed_paths` (by default the
//! user's home and the node's working directory), and never in the data directory.

use std::path::{Path, PathBuf};

/// The default roots: `$HOME` and the working directory.
pub fn default_roots() -> Vec<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::current_dir().ok())
        .collect()
}

/// Where `put` may read and `get` may write.
#[derive(Debug, Clone)]
pub struct AllowedPaths {
    roots: Vec<PathBuf>,
    data_dir: PathBuf,
}

impl AllowedPaths {
    /// `roots` (the defaults when empty), never `data_dir`.
    pub fn new(roots: &[PathBuf], data_dir: &Path) -> Self {
        let roots = if roots.is_empty() {
            default_roots()
        } else {
            roots.to_vec()
        };
        AllowedPaths {
            roots: roots.iter().map(|r| canonical(r)).collect(),
            data_dir: canonical(data_dir),
        }
    }

    /// Checks a path the API names (after symlinks and `..` are resolved: a file that
    /// exists, or the parent directory of one to create). `Err` says why not.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let real = match path.canonicalize() {
            Ok(p) => p,
            Err(_) => {
                let parent = path.parent().ok_or("the path has no parent directory")?;
                let name = path.file_name().ok_or("the path names no file")?;
                parent
                    .canonicalize()
                    .map_err(|e| format!("{}: {e}", parent.display()))?
                    .join(name)
            }
        };
        if real.starts_with(&self.data_dir) {
            return Err("the node's data directory is off limits".into());
        }
        if self.roots.iter().any(|r| real.starts_with(r)) {
            Ok(())
        } else {
            Err(format!(
                "{} is outside the directories the node may use ([storage] allowed_paths)",
                real.display()
            ))
        }
    }
}

/// `p` with symlinks resolved when it exists, else as given.
fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_roots_and_never_the_data_dir() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("node.key"), b"k").unwrap();
        std::fs::write(root.path().join("f.bin"), b"x").unwrap();
        let a = AllowedPaths::new(&[root.path().to_owned()], &data);
        assert!(a.check(&root.path().join("f.bin")).is_ok());
        assert!(
            a.check(&root.path().join("new.bin")).is_ok(),
            "a file to create"
        );
        assert!(a.check(&data.join("node.key")).is_err());
        assert!(a.check(&root.path().join("data/../data/node.key")).is_err());
        assert!(a.check(Path::new("/etc/shadow")).is_err());
        assert!(a.check(Path::new("/proc/self/environ")).is_err());
        // A symlink out of the root does not get out.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/passwd", root.path().join("link")).unwrap();
            assert!(a.check(&root.path().join("link")).is_err());
        }
    }
}
