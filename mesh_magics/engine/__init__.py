"""Running generations: one event loop on one worker thread for the whole process, the
`Generation` handle a run returns, and waiting on it (docs/design.md)."""
