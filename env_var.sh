# Source this file to set the environment opscope reads:   source ./env_var.sh
# Every variable is optional; the value shown is the default opscope uses when it is unset.

# Where `opscope collect/compare/train` keep measurements when --store is not given.
export OPSCOPE_STORE="${OPSCOPE_STORE:-runs.db}"

# Where user target specs live; `opscope probe` writes host-measured.toml here and every
# command that takes --target finds specs in it by name.
export OPSCOPE_SPEC_DIR="${OPSCOPE_SPEC_DIR:-$HOME/.config/opscope/specs}"

# Cache of imported models' operators (entries under workloads/); "off" disables it.
export OPSCOPE_CACHE_DIR="${OPSCOPE_CACHE_DIR:-$HOME/.cache/opscope}"

# Thread counts to sweep when --threads is not given (comma list, or "all" for every core).
export OPSCOPE_THREADS="${OPSCOPE_THREADS:-1,2}"

# Pin measuring workers' threads to cores (1) or let the OS place them (0).  opscope sets
# TVM_BIND_THREADS in the measuring worker from this; TVM_NUM_THREADS is set there per measurement
# from the thread count being measured, so setting it here has no effect on `collect`.
export OPSCOPE_PIN_THREADS="${OPSCOPE_PIN_THREADS:-0}"

# Cores the measuring worker (and `opscope corun`) may use (taskset-style list, e.g. "0-7");
# empty means all.
export OPSCOPE_CPUSET="${OPSCOPE_CPUSET:-}"

# TVM RPC tracker for `--target rpc` device farms, and the device key to request.
export TVM_TRACKER_HOST="${TVM_TRACKER_HOST:-127.0.0.1}"
export TVM_TRACKER_PORT="${TVM_TRACKER_PORT:-9190}"
export OPSCOPE_RPC_KEY="${OPSCOPE_RPC_KEY:-}"
