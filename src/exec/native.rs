//! Native permission settings (to do).
