//! Any bytes as a YAML file of the configuration folder, read and compiled.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gantry::fuzzing::folder_file(bytes);
});
