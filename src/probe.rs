//! The probe loop (to be written).
