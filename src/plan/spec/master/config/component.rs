//! Component metadata (`router`, `kv-offload-backend`: `{name, version}`) and the rule of where
//! `router` and `kv-p2p-transfer` may be declared: checks that entries, fixed-seq-len points and
//! agentic points share, apart so that those readers import them rather than each other.

use super::{MasterEntry, Point};
use crate::base::yaml::SpecError;
use crate::plan::spec::master::check::Fields;
use crate::plan::spec::master::yaml11::{Document, Node};

pub(super) fn non_empty_str(f: &Fields<'_>, key: &str, node: &Node) -> Result<(), SpecError> {
    if f.str_of(key, node)?.is_empty() {
        return Err(f.error(key, "must not be empty"));
    }
    Ok(())
}

/// `{name, version}` metadata (`router`); `version_required` is false for `kv-offload-backend`.
pub(super) fn metadata(
    doc: &Document,
    node: &Node,
    path: &str,
    version_required: bool,
) -> Result<(), SpecError> {
    let f = Fields::new(doc, node, path.to_owned(), &["name", "version"])?;
    non_empty_str(&f, "name", f.required("name")?)?;
    let version = if version_required {
        Some(f.required("version")?)
    } else {
        f.present("version")
    };
    if let Some(v) = version {
        non_empty_str(&f, "version", v)?;
        if f.str_of("version", v)?.starts_with("image:") {
            return Err(f.error("version", "component version must be a release, package version, or source commit, not an image reference"));
        }
    }
    Ok(())
}

pub(super) fn component(doc: &Document, node: &Node, path: &str) -> Result<(), SpecError> {
    metadata(doc, node, path, true)
}

/// `router` and `kv-p2p-transfer` are declared at the top level or in the points, not both;
/// `kv-p2p-transfer` is multinode only, and `disagg` needs one.
pub(super) fn component_scope(f: &Fields<'_>, e: &MasterEntry) -> Result<(), SpecError> {
    let points: Vec<&Point> = e
        .fixed_seq_len
        .iter()
        .flat_map(|s| &s.points)
        .chain(e.agentic.iter().flat_map(|a| &a.points))
        .collect();
    let set = |n: &Option<Node>| n.as_ref().is_some_and(|n| !n.is_null());
    for (key, top, in_point) in [
        (
            "router",
            set(&e.router),
            points.iter().find(|p| set(&p.router)),
        ),
        (
            "kv-p2p-transfer",
            set(&e.kv_p2p_transfer),
            points.iter().find(|p| set(&p.kv_p2p_transfer)),
        ),
    ] {
        if let Some(p) = in_point.filter(|_| top) {
            return Err(p.origin.error(format!("{key} must be declared either at the top level or in search-space entries, not both")));
        }
        if key == "kv-p2p-transfer"
            && !e.multinode
            && let Some(p) = in_point
        {
            return Err(p
                .origin
                .error("kv-p2p-transfer is only valid when multinode=true"));
        }
    }
    if e.disagg
        && !set(&e.kv_p2p_transfer)
        && (points.is_empty() || points.iter().any(|p| !set(&p.kv_p2p_transfer)))
    {
        return Err(f.error(
            "disagg",
            "disagg=true requires kv-p2p-transfer at the top level or in every search-space entry",
        ));
    }
    Ok(())
}
