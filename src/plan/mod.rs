//! Planning: a sweep spec ([`spec`]) expanded into cells, each planned and rendered into a runner
//! script ([`render`]) with its engine's command line ([`engine`]); and the KV-size arithmetic a
//! spec is sized with ([`kvsize`]). Imports the layers below only.

pub mod engine;
pub mod kvsize;
pub mod render;
pub mod spec;
