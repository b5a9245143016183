//! Flags + scenario resolved into one probe's settings (to be written).
