/*
 * qs_common.h -- shared definitions for the qsketch native core.
 *
 * The core is plain C99 with no Python or numpy dependency, so it can be
 * tested, fuzzed and sanitized on its own (see csrc/tests/).
 */
#ifndef QS_COMMON_H
#define QS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define QS_INLINE static inline __attribute__((always_inline))
#define QS_LIKELY(x) __builtin_expect(!!(x), 1)
#define QS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define QS_INLINE static inline
#define QS_LIKELY(x) (x)
#define QS_UNLIKELY(x) (x)
#endif

/* Every fallible entry point returns one of these.  Mirrored in _core.pxd. */
typedef enum qs_status {
    QS_OK = 0,
    QS_ENOMEM = 1,      /* an allocation failed; the sketch is unchanged        */
    QS_EINVAL = 2,      /* an argument is out of range                          */
    QS_ENAN = 3,        /* a NaN item under the "raise" policy                  */
    QS_EOVERFLOW = 4,   /* the total weight would exceed 2^64 - 1               */
    QS_EFORMAT = 5,     /* serialized bytes are malformed (detail in a message) */
    QS_ECHECKSUM = 6,   /* serialized bytes fail their CRC32                    */
    QS_EVERSION = 7     /* serialized bytes use an unknown format version       */
} qs_status;

#endif /* QS_COMMON_H */
