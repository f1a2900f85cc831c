//! What `seed check` reports: one problem, with the line and field it is about.

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the item the problem is about, where known.
    pub line: Option<u64>,
    /// The field, as a path: `nodes[ctl1].bmc.address`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}
