pub mod fake_providers;
