//! One point of a sweep, the unit every stage after the spec works on. It lives apart from the
//! spec so that the engine command, the artifact schema and the spec can all name it without
//! importing each other.

use serde::{Deserialize, Serialize};

use crate::base::kinds::Offload;

/// One point of the sweep: what one matrix job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Unique within the sweep and safe as a file, directory and artifact name.
    pub name: String,
    pub runner: Option<String>,
    pub tp: u32,
    /// Expert-parallel size; 0 when the cell does not use expert parallelism.
    pub ep: u32,
    pub users: u32,
    pub offload: Offload,
}
