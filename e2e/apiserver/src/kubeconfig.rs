//! The kubeconfig that points kubectl and kube-rs clients at this server: one cluster
//! (plain HTTP on loopback), one context with namespace `default`, one user whose token
//! the server ignores (it authenticates nobody; see the README).

use std::path::Path;

/// Name of the cluster, user and context in the generated kubeconfig.
pub const CONTEXT: &str = "eventcast-test";

/// The kubeconfig YAML for a server at `url` (`http://127.0.0.1:PORT`).
pub fn render(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {url}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
users:
- name: {CONTEXT}
  user:
    token: not-checked
preferences: {{}}
"
    )
}

/// Writes the kubeconfig to `path` (creating parent directories).
pub fn write(path: &Path, url: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, render(url))
}

#[cfg(test)]
mod tests {
    #[test]
    fn kubeconfig_names_the_server() {
        let text = super::render("http://127.0.0.1:1234");
        assert!(text.contains("server: http://127.0.0.1:1234"));
        assert!(text.contains("current-context: eventcast-test"));
    }
}
