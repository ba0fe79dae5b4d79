//! Commands that drive several layers at once: `kvsweep collect` ([`collect`]: collect, then
//! draw the report), a local sweep ([`sweep`]: run every cell, then
//! collect and report), a predicted sweep ([`predict`]) and the simulator's calibration
//! ([`calibrate`]). `main.rs` parses the command line and hands each subcommand to its module.

pub mod calibrate;
pub mod collect;
pub mod predict;
pub mod sweep;
