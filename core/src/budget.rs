//! The memory a device needs for its sizes, known before anything is built or flashed: the
//! one set of formulas behind the firmware's build-time assertions and `ldl inspect`.
//!
//! A board's firmware is built for fixed [`Sizes`] (`firmware/boards.toml`): the input
//! dimension, the largest shift augmentation and linear target an enrollment handles, the
//! rank and number of enrolled classes its store keeps, and the images one enrollment
//! buffers. From them follow its one RAM workspace ([`Sizes::workspace`]: the enrollment's
//! images and fit, or a classification) and its store ([`Sizes::slot_bytes`]: two slots,
//! each holding every enrolled class at its largest).

use crate::augment::shift_count;
use crate::compact::{self, Shape};
use crate::protocol::MAX_FRAME_LEN;
use crate::{fit, store};

/// Bytes of the firmware's reply frame buffer (an `Info` with 64 labels is about 1.2 KB).
pub const TX_BYTES: usize = 2048;
/// RAM of the firmware's other statics (the store's index, the drivers, defmt), bounded.
pub const OTHER_BYTES: usize = 2048;
/// RAM kept for the stack: the measured peak is about 4 KiB (`firmware/bench.sh`), and no
/// function frame may exceed 2 KiB (`firmware/ci.sh`).
pub const STACK_BYTES: usize = 8192;

/// What a board's firmware is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Input dimension `d` of the models it runs.
    pub inputs: usize,
    /// Width of an image (`inputs / width` rows), for shift augmentation.
    pub width: usize,
    /// Largest shift augmentation (pixels) an enrollment buffers room for.
    pub shift: usize,
    /// Widest linear target (`k`) an enrolled class may be fitted against (0: identity only).
    pub outputs: usize,
    /// Directions kept per enrolled class (`R`).
    pub rank: usize,
    /// Enrolled classes the store keeps (`C`).
    pub classes: usize,
    /// Images one enrollment takes.
    pub images: usize,
}

impl Sizes {
    /// Rows an enrollment fits: every image with its shifts.
    pub const fn rows(&self) -> usize {
        self.images.saturating_mul(shift_count(self.shift as u8))
    }

    /// Bytes of the largest enrolled class the store guarantees room for: `rank` directions
    /// over every input, identity target, no mean (the classes of the device and mcu modes).
    /// Classes with a mean or a linear target are larger; the store takes them while they
    /// fit ([`crate::store::Store::enroll`]).
    pub const fn class_bytes(&self) -> usize {
        store::max_plain_class_len(self.inputs, self.rank)
    }

    /// Bytes of one store slot (whole erase sectors of `erase` bytes) for `classes` classes
    /// of [`Sizes::class_bytes`]. The store takes two.
    pub const fn slot_bytes(&self, erase: usize) -> usize {
        store::slot_len(self.classes, self.class_bytes(), erase)
    }

    /// The linear target width an enrollment's scratch is sized for (identity targets need
    /// no projections).
    const fn k(&self) -> usize {
        self.outputs
    }

    /// f32s of the fit's scratch ([`crate::fit::fit_scratch_len`]).
    pub const fn fit_scratch(&self) -> usize {
        fit::fit_scratch_len(self.rows(), self.inputs, self.width, self.shift, self.k(), self.rank)
    }

    /// f32s a stored class's distance needs at most (its head read from flash, then
    /// [`crate::compact::distance_scratch_len`]), plus `Q(x)`.
    pub const fn stored_class_scratch(&self) -> usize {
        let worst = Shape {
            inputs: self.inputs,
            outputs: if self.outputs > 0 { self.outputs } else { self.inputs },
            rank: self.rank,
            runs: compact::max_runs(self.inputs),
            live: self.inputs,
            affine: true,
            linear: self.outputs > 0,
        };
        let q = if self.outputs > self.inputs { self.outputs } else { self.inputs };
        q.saturating_add(worst.head_words())
            .saturating_add(compact::distance_scratch_len(&worst))
    }

    /// f32s of classification scratch a model's own classes may take on this device: what
    /// is left of the workspace next to the enrollment images and the input.
    pub const fn model_scratch(&self) -> usize {
        self.workspace()
            .saturating_sub(self.images.saturating_mul(self.inputs))
            .saturating_sub(self.inputs)
    }

    /// f32s of the one workspace: the images of an enrollment in progress, then either the
    /// fit's scratch or a classification (the input, a query alignment's warped view and
    /// distances, and a stored class's distance scratch).
    pub const fn workspace(&self) -> usize {
        let fit = self.fit_scratch();
        let align = crate::augment::Alignment::scratch_len(self.inputs, crate::format::MAX_CLASSES);
        let cls = self.inputs.saturating_add(align).saturating_add(self.stored_class_scratch());
        self.images
            .saturating_mul(self.inputs)
            .saturating_add(if fit > cls { fit } else { cls })
    }

    /// Bytes of the workspace.
    pub const fn workspace_bytes(&self) -> usize {
        self.workspace().saturating_mul(4)
    }

    /// RAM the firmware takes: the workspace, the receive frame, the reply buffer, the other
    /// statics and the stack kept free ([`STACK_BYTES`]).
    pub const fn ram_bytes(&self) -> usize {
        self.workspace_bytes()
            .saturating_add(MAX_FRAME_LEN + TX_BYTES + OTHER_BYTES + STACK_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnist_sizes() {
        let s = Sizes {
            inputs: 784,
            width: 28,
            shift: 2,
            outputs: 0,
            rank: 32,
            classes: 10,
            images: 5,
        };
        assert_eq!(s.rows(), 125);
        // 32 directions of 1 + 196 words, one run, 32 weights, and the class head.
        assert_eq!(s.class_bytes(), 36 + 4 * (1 + 32 + 32 * 197));
        // Ten such classes fit two 128 KiB sectors.
        assert_eq!(s.slot_bytes(128 << 10), 256 << 10);
        // The Gram matrix dominates the workspace.
        assert!(s.fit_scratch() > 125 * 125);
        assert!(s.workspace_bytes() < 110 << 10, "{}", s.workspace_bytes());
        assert!(s.model_scratch() >= s.stored_class_scratch());
    }
}
