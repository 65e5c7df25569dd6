//! Automatic IOVA allocation for IOAS_MAP and IOAS_COPY without FIXED_IOVA
//! (the kernel's iopt_alloc_iova): first fit, lowest address, inside the
//! allowed list (or the whole space), avoiding reserved ranges and areas,
//! never returning IOVA 0, and keeping the user address's page offset.

use crate::area_map::AreaMap;
use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{IoPagetable, Reserved, HPAGE_SIZE, PAGE_SIZE, ULONG_MAX};

/// The alignment the kernel chooses for an allocation: the length rounded
/// up to a power of two, limited by the user address's own alignment and by
/// the huge page size.
pub fn alloc_alignment(length: u64, user_va: u64) -> u64 {
    let rounded = length.checked_next_power_of_two().unwrap_or(1 << 63);
    let align = if user_va == 0 {
        rounded
    } else {
        rounded.min(1u64 << user_va.trailing_zeros())
    };
    align.min(HPAGE_SIZE)
}

impl IoPagetable {
    /// `&mut` because the walk computes the hole summaries of leaves
    /// changed since the last allocation (area_map.rs, `fits`).
    pub(crate) fn alloc_iova(&mut self, length: u64, user_va: u64) -> Result<u64> {
        if length >= ULONG_MAX / 2 {
            return err(
                EOVERFLOW,
                format!("Length {length:#x} is too large to place automatically."),
            );
        }
        let align = alloc_alignment(length, user_va);
        if align < self.iova_alignment {
            return err(
                EINVAL,
                format!(
                    "user_va {user_va:#x} and length {length:#x} allow only {align:#x} alignment, \
                     below the IOAS alignment {:#x}.",
                    self.iova_alignment
                ),
            );
        }
        let page_offset = user_va % PAGE_SIZE;
        let (lo, hi) = (PAGE_SIZE, ULONG_MAX - PAGE_SIZE);
        // No allocation per call: the windows are borrowed or the whole
        // space, and the reserved ranges are kept sorted as they are added.
        let whole = [(lo, hi)];
        let windows = if self.allowed.is_empty() {
            &whole[..]
        } else {
            &self.allowed[..]
        };
        for &(s, l) in windows {
            if s > hi || l < lo {
                continue;
            }
            let (start, last) = (s.max(lo), l.min(hi));
            let fit = first_fit(
                &mut self.areas,
                &self.reserved,
                (start, last),
                length,
                align,
                page_offset,
            );
            if let Some(iova) = fit {
                return Ok(iova);
            }
        }
        err(
            ENOSPC,
            format!("No free IOVA hole fits {length:#x} bytes at alignment {align:#x}."),
        )
    }
}

/// The lowest aligned candidate in the holes of `[lo, hi]`, holes being
/// the gaps between areas (from the area map, which steps over leaves
/// without a hole that fits at this alignment and page offset) minus
/// the reserved ranges. Cost: the leaves of the window (8 bytes each),
/// the areas of the leaves entered (those with a hole that fits, so
/// about one unless reserved ranges or the window's end refuse it), and
/// the reserved ranges; never the bytes. Sub-page lengths and page
/// offsets cost the same as whole pages.
fn first_fit(
    areas: &mut AreaMap,
    reserved: &[Reserved],
    (lo, hi): (u64, u64),
    length: u64,
    align: u64,
    page_offset: u64,
) -> Option<u64> {
    // At least page granularity, so the IOVA keeps the user address's
    // page offset even when the hole starts mid-page.
    let align = align.max(PAGE_SIZE);
    let fit = |p: u64, last: u64| {
        let c = align_up(p, align)? | page_offset;
        (c >= p && c <= last && last - c >= length - 1).then_some(c)
    };
    // Some(Some(iova)): found; Some(None): nothing more in the window.
    let found = areas.find_hole(
        lo,
        length,
        align,
        page_offset,
        |start, last| -> Option<Option<u64>> {
            if start > hi {
                return Some(None);
            }
            let last = last.min(hi);
            let mut p = start;
            for &Reserved {
                start: rs,
                last: rl,
                ..
            } in reserved
            {
                if rl < p {
                    continue;
                }
                if rs > last {
                    break;
                }
                if rs > p {
                    if let Some(c) = fit(p, rs - 1) {
                        return Some(Some(c));
                    }
                }
                match rl.checked_add(1) {
                    Some(next) => p = next,
                    None => return Some(None),
                }
                if p > last {
                    return None;
                }
            }
            fit(p, last).map(Some)
        },
    );
    found.flatten()
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    let mask = align - 1;
    value.checked_add(mask).map(|v| v & !mask)
}
