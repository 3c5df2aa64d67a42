//! Cursor pagination for Relay connections: remembers the cursors of the pages before
//! this one so "Previous" works without the server paging backwards.

use leptos::prelude::*;

use crate::model::PageInfo;

/// The `after` cursors that led to the current page (empty: the first page).
#[derive(Clone, Copy)]
pub struct Cursor {
    stack: RwSignal<Vec<String>>,
}

impl Cursor {
    pub fn new() -> Self {
        Self {
            stack: RwSignal::new(Vec::new()),
        }
    }

    /// Reactive: the `after` argument for the current page.
    pub fn after(&self) -> Option<String> {
        self.stack.with(|s| s.last().cloned())
    }

    /// Reactive: 1-based page number.
    pub fn page(&self) -> usize {
        self.stack.with(Vec::len) + 1
    }

    pub fn next(&self, end_cursor: String) {
        self.stack.update(|s| s.push(end_cursor));
    }

    pub fn previous(&self) {
        self.stack.update(|s| {
            s.pop();
        });
    }

    /// Back to the first page (filters changed).
    pub fn reset(&self) {
        if self.stack.with_untracked(|s| !s.is_empty()) {
            self.stack.set(Vec::new());
        }
    }
}

impl Default for Cursor {
    fn default() -> Self {
        Self::new()
    }
}

#[component]
pub fn Pager(cursor: Cursor, page_info: PageInfo, total: i64, shown: usize) -> impl IntoView {
    let end_cursor = page_info
        .end_cursor
        .clone()
        .filter(|_| page_info.has_next_page);
    let has_next = end_cursor.is_some();
    view! {
        <nav class="pager" aria-label="Pagination">
            <button
                type="button"
                data-test="prev-page"
                disabled=move || cursor.page() == 1
                on:click=move |_| cursor.previous()
            >
                "← Previous"
            </button>
            <span class="pager-info" data-test="page-info">
                {move || format!("Page {} · {shown} shown · {total} in all", cursor.page())}
            </span>
            <button
                type="button"
                data-test="next-page"
                disabled=!has_next
                on:click=move |_| {
                    if let Some(end) = end_cursor.clone() {
                        cursor.next(end);
                    }
                }
            >
                "Next →"
            </button>
        </nav>
    }
}
