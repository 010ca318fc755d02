//! Packing, pushing and pulling artifacts.
