//! `offgrid-node init`: first-run setup. Writes the commented config (the repository's
//! `config.example.toml`, every key at its default, with the data directory filled in),
//! creates the node key and the API token, and prints the next steps.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use offgrid_node::{config::Config, http::auth, identity::Identity};

/// The commented config, embedded so `init` needs nothing beside the binary.
const EXAMPLE: &str = include_str!("../../config.example.toml");
const DATA_DIR_LINE: &str = "# data_dir = \"/var/lib/offgrid\"";

/// Writes the config to `config` (default `<data_dir>/config.toml`); refuses to replace an
/// existing file unless `force`. Returns what to print.
pub fn init(data_dir: &Path, config: Option<PathBuf>, force: bool) -> anyhow::Result<String> {
    create_private_dir(data_dir)?;
    let path = config.unwrap_or_else(|| data_dir.join("config.toml"));
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    let dir_toml = toml_string(&data_dir.display().to_string());
    let body = EXAMPLE.replacen(DATA_DIR_LINE, &format!("data_dir = {dir_toml}"), 1);
    auth::write_private(&path, body.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    // What was written must load: a broken template would otherwise only show at start.
    Config::load(&path).with_context(|| format!("checking {}", path.display()))?;
    let id = Identity::load_or_create(data_dir)?;
    let peer_id = offgrid_node::http::PubKeys::of(&id).peer_id;
    let token = auth::load_or_create_token(data_dir)
        .with_context(|| format!("creating the API token in {}", data_dir.display()))?;
    let dir = data_dir.display();
    let cfg = path.display();
    Ok(format!(
        "wrote {cfg}\n\
         peer id    {peer_id}\n\
         api token  {token}\n\
         \x20          (in {dir}/{token_file}; actions in the dashboard and `offgrid` need it)\n\
         \n\
         Next steps:\n\
         1. Start the node:        offgrid-node --config {cfg}\n\
         \x20  then open http://127.0.0.1:9000/ for the dashboard (reading needs no token).\n\
         2. Join a mesh's wallet:  offgrid --data-dir {dir} wallet join <GENESIS_ID>\n\
         \x20  (or start one for a new mesh: offgrid --data-dir {dir} wallet init)\n\
         3. Add a radio: uncomment a [[radio]] entry in {cfg}, e.g.\n\
         \x20    [[radio]]\n\
         \x20    link = \"kiss:/dev/ttyUSB0@115200\"\n\
         \x20  or start with --radio kiss:/dev/ttyUSB0@115200; check it with `offgrid radio status`.\n\
         4. Run it as a service: dist/systemd/offgrid-node.service.\n",
        token_file = auth::TOKEN_FILE,
    ))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
