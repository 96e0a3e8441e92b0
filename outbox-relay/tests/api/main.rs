mod helpers;
mod relay;
