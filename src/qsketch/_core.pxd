# Declarations of the C core (csrc/qs_kll.h).  Must match that header.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "qs_common.h":
    ctypedef enum qs_status:
        QS_OK
        QS_ENOMEM
        QS_EINVAL
        QS_ENAN
        QS_EOVERFLOW
        QS_EFORMAT
        QS_ECHECKSUM
        QS_EVERSION

cdef extern from "qs_kll.h" nogil:
    enum:
        QS_KLL_MIN_K
        QS_KLL_MAX_K
        QS_KLL_DEFAULT_K
        QS_KLL_MAX_EXACT_LIMIT
        QS_KLL_MAX_BUCKETS
    ctypedef struct qs_kll:
        pass

    qs_kll *qs_kll_new(uint32_t k, uint64_t seed, qs_status *status)
    qs_kll *qs_kll_copy(const qs_kll *sk, qs_status *status)
    void qs_kll_free(qs_kll *sk)

    qs_status qs_kll_update(qs_kll *sk, double x, int nan_raise)
    qs_status qs_kll_update_batch(qs_kll *sk, const double *x, size_t len, int nan_raise)
    qs_status qs_kll_update_weighted(qs_kll *sk, const double *x, const uint64_t *weights,
                                     size_t len, int nan_raise)
    qs_status qs_kll_merge(qs_kll *dst, qs_kll *src)

    uint32_t qs_kll_k(const qs_kll *sk)
    uint64_t qs_kll_n(const qs_kll *sk)
    uint64_t qs_kll_nan_count(const qs_kll *sk)
    double qs_kll_min(const qs_kll *sk)
    double qs_kll_max(const qs_kll *sk)
    uint32_t qs_kll_num_retained(const qs_kll *sk)
    uint32_t qs_kll_num_levels(const qs_kll *sk)
    int qs_kll_is_estimation_mode(const qs_kll *sk)
    uint8_t qs_kll_user_flags(const qs_kll *sk)
    void qs_kll_set_user_flags(qs_kll *sk, uint8_t flags)
    double qs_kll_normalized_rank_error(uint32_t k, int pmf)
    uint32_t qs_kll_default_exact_limit(uint32_t k)
    qs_status qs_kll_set_exact_limit(qs_kll *sk, uint32_t limit)
    uint32_t qs_kll_exact_limit(const qs_kll *sk)
    qs_status qs_kll_set_buckets(qs_kll *sk, uint32_t buckets)
    uint32_t qs_kll_buckets(const qs_kll *sk)
    uint32_t qs_kll_default_buckets(uint32_t k)
    uint32_t qs_kll_bucket_boundaries(const qs_kll *sk)
    void qs_kll_bucket_layer(const qs_kll *sk, const double **bound, const uint64_t **open,
                             const uint64_t **atom, uint32_t *m)
    qs_status qs_kll_rank_est(qs_kll *sk, const double *q, size_t len, int inclusive, int estimator,
                              double *out)
    qs_status qs_kll_quantile_est(qs_kll *sk, const double *p, size_t len, int inclusive,
                                  int estimator, double *out)
    double qs_kll_interp_slack(const qs_kll *sk)

    qs_status qs_kll_rank(qs_kll *sk, const double *q, size_t len, int inclusive, double *out)
    qs_status qs_kll_quantile(qs_kll *sk, const double *p, size_t len, int inclusive, double *out)
    qs_status qs_kll_sorted_view(qs_kll *sk, const double **items, const uint64_t **cum_weights,
                                 uint32_t *size)
    qs_status qs_kll_level(const qs_kll *sk, uint32_t level, const double **items, uint32_t *size)

    size_t qs_kll_serialized_size(const qs_kll *sk)
    qs_status qs_kll_serialize(const qs_kll *sk, uint8_t *buf, size_t cap, size_t *written)
    qs_kll *qs_kll_deserialize(const uint8_t *buf, size_t len, qs_status *status,
                               const char **message)
    int qs_kll_check_invariants(const qs_kll *sk, const char **message)
