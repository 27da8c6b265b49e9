//! Offgrid-Net daemon library.
