//! Small building blocks shared by the pages.

pub mod confirm;
pub mod copy;
pub mod json_view;
pub mod nav;
pub mod pager;
pub mod reveal;
pub mod status;
