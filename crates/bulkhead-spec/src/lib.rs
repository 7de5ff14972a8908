//! bulkhead-spec
