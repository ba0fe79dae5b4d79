//! Results: cell artifacts collected into tables and frontiers ([`collect`], [`pareto`]), the
//! report ([`report`]), the history database and the regression gate ([`history`], [`gate`]),
//! and the offline oracle's hit-rate bounds ([`oracle`]). Imports running and the layers below.

pub mod collect;
pub mod gate;
pub mod history;
pub mod oracle;
pub mod pareto;
pub mod report;
