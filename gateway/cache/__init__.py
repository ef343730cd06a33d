"""Result cache: identity-safe keys, determinism, two tiers, coalescing."""
