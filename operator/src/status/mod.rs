//! Status of the reconciled resources: what it should say ([`conditions`]) and getting it
//! written without churn ([`writer`]).

pub mod conditions;
pub mod writer;

pub use conditions::{CommonStatus, Facts};
pub use writer::StatusWriter;
