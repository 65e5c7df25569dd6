//! Automatic IOVA allocation for IOAS_MAP and IOAS_COPY without FIXED_IOVA
//! (the kernel's iopt_alloc_iova): first fit, lowest address, inside the
//! allowed list (or the whole space), avoiding reserved ranges and areas,
//! never returning IOVA 0, and keeping the user address's page offset.

use crate::errno::{err, Errno::*, Result};
use crate::io_pagetable::{IoPagetable, HPAGE_SIZE, PAGE_SIZE, ULONG_MAX};

/// The alignment the kernel chooses for an allocation: the length rounded
/// up to a power of two, limited by the user address's own alignment and by
/// the huge page size.
pub fn alloc_alignment(length: u64, user_va: u64) -> u64 {
    let rounded = length.checked_next_power_of_two().unwrap_or(1 << 63);
    let align = if user_va == 0 { rounded } else { rounded.min(1u64 << user_va.trailing_zeros()) };
    align.min(HPAGE_SIZE)
}

impl IoPagetable {
    pub(crate) fn alloc_iova(&self, length: u64, user_va: u64) -> Result<u64> {
        if length >= ULONG_MAX / 2 {
            return err(EOVERFLOW, format!("Length {length:#x} is too large to place automatically."));
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
        let windows: Vec<(u64, u64)> = if self.allowed.is_empty() {
            vec![(lo, hi)]
        } else {
            self.allowed
                .iter()
                .filter(|&&(s, l)| s <= hi && l >= lo)
                .map(|&(s, l)| (s.max(lo), l.min(hi)))
                .collect()
        };
        let mut reserved: Vec<(u64, u64)> =
            self.reserved.iter().map(|r| (r.start, r.last)).collect();
        reserved.sort_unstable();
        for (start, last) in windows {
            if let Some(iova) = self.first_fit(start, last, length, align, page_offset, &reserved) {
                return Ok(iova);
            }
        }
        err(ENOSPC, format!("No free IOVA hole fits {length:#x} bytes at alignment {align:#x}."))
    }

    /// Walk the holes of `[lo, hi]` in ascending order; the first one that
    /// holds an aligned candidate wins. Cost: the leaves of the window (8
    /// bytes each, see AreaMap::skip_to_gap), the areas of the leaves whose
    /// holes are long enough, and the reserved ranges; never its bytes.
    fn first_fit(
        &self,
        lo: u64,
        hi: u64,
        length: u64,
        align: u64,
        page_offset: u64,
        reserved: &[(u64, u64)],
    ) -> Option<u64> {
        let mut p = lo;
        while p <= hi {
            // Leaves whose holes are all shorter than `length` hold no fit.
            p = p.max(self.areas.skip_to_gap(p, length)?);
            if p > hi {
                break;
            }
            // Skip whatever occupies p.
            if let Some(a) = self.area_at(p) {
                p = a.last.checked_add(1)?;
                continue;
            }
            if let Some(&(_, l)) = reserved.iter().find(|&&(s, l)| s <= p && p <= l) {
                p = l.checked_add(1)?;
                continue;
            }
            // p starts a hole; it ends before the next area or reserved range.
            let next_area = self.areas.ceil(p).map(|a| a.iova);
            let next_resv = reserved.iter().map(|&(s, _)| s).filter(|&s| s > p).min();
            let hole_last = [next_area, next_resv]
                .into_iter()
                .flatten()
                .min()
                .map_or(hi, |s| (s - 1).min(hi));
            // At least page granularity, so the IOVA keeps the user address's
            // page offset even when the hole starts mid-page.
            let candidate = align_up(p, align.max(PAGE_SIZE)).map(|c| c | page_offset);
            if let Some(c) = candidate {
                if c >= p && c <= hole_last && hole_last - c >= length - 1 {
                    return Some(c);
                }
            }
            p = hole_last.checked_add(1)?;
        }
        None
    }
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    let mask = align - 1;
    value.checked_add(mask).map(|v| v & !mask)
}
