/*
 * strom.protocol._record_walk: the produce-path validation walk over a v2 batch's records.
 *
 * A C copy of strom.protocol.record_walk.walk_records_py with exactly its semantics: the same
 * (lo_delta, hi_delta, null_keys) result, and on malformed input the same RecordsError
 * (built by strom.protocol.record_errors.invalid, with the same message). That includes the
 * corners of the Python code:
 *
 * - positions index like Python's buf[pos]: a negative start position counts from the end;
 * - a varint has at most 5 bytes and its 5th byte's 7 bits all count (values up to 2**34 in
 *   magnitude); a varlong has at most 10 bytes and its 10th byte's 7 bits all count (values up
 *   to 2**69 in magnitude), so timestamp deltas are kept in 128 bits;
 * - lo/hi start at 2**64 and -2**64 (returned as is when count <= 0);
 * - attributes are skipped unread; key_len < 0 is a null key; value_len <= 0 reads nothing.
 *
 * Every byte read is bounds-checked against the buffer: the input is untrusted.
 * The buffer is taken with PyObject_GetBuffer(PyBUF_SIMPLE): any C-contiguous bytes-like object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#ifndef __SIZEOF_INT128__
#error "strom.protocol._record_walk needs __int128 (gcc or clang); strom falls back to Python"
#endif

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#endif

/* Read status: a varint that ran past the end of the buffer (Python: IndexError) or that
   had more bytes than allowed. */
#define ST_OK 0
#define ST_EOF 1
#define ST_TOO_LONG 2

/* No buffer can come near this, and it keeps every position sum far from int64 overflow:
   positions stay within [-end - 1, end + 2**36]. */
#define MAX_BUFFER_LEN ((int64_t)1 << 56)

/* The byte at position p as Python's buf[p] sees it (a negative p counts from the end), or
   -1 where buf[p] would raise IndexError. */
static inline int
byte_at(const uint8_t *d, int64_t end, int64_t p)
{
    if (LIKELY((uint64_t)p < (uint64_t)end)) {
        return d[p];
    }
    if (p < 0 && p >= -end) {
        return d[p + end];
    }
    return -1;
}

/* A zigzag varint of at most 5 bytes at *pos (bits: at most 35, so no overflow). */
static inline int
read_varint(const uint8_t *d, int64_t end, int64_t *pos, int64_t *out)
{
    int64_t p = *pos;
    int b = byte_at(d, end, p);
    if (LIKELY(b >= 0 && b < 0x80)) {
        *out = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
        *pos = p + 1;
        return ST_OK;
    }
    if (b < 0) {
        return ST_EOF;
    }
    uint64_t raw = (uint64_t)(b & 0x7F);
    for (int k = 1; k < 5; k++) {
        b = byte_at(d, end, p + k);
        if (b < 0) {
            return ST_EOF;
        }
        raw |= (uint64_t)(b & 0x7F) << (7 * k);
        if (b < 0x80) {
            *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
            *pos = p + k + 1;
            return ST_OK;
        }
    }
    return ST_TOO_LONG;
}

/* A zigzag varlong of at most 10 bytes at *pos. Up to 9 bytes the raw value has at most 63
   bits; the 10th byte's 7 bits go to bits 63..69, hence the 128-bit result. */
static inline int
read_varlong(const uint8_t *d, int64_t end, int64_t *pos, i128 *out)
{
    int64_t p = *pos;
    int b = byte_at(d, end, p);
    if (LIKELY(b >= 0 && b < 0x80)) {
        *out = (i128)((int64_t)(b >> 1) ^ -(int64_t)(b & 1));
        *pos = p + 1;
        return ST_OK;
    }
    if (b < 0) {
        return ST_EOF;
    }
    uint64_t raw = (uint64_t)(b & 0x7F);
    for (int k = 1; k < 9; k++) {
        b = byte_at(d, end, p + k);
        if (b < 0) {
            return ST_EOF;
        }
        raw |= (uint64_t)(b & 0x7F) << (7 * k);
        if (b < 0x80) {
            *out = (i128)((int64_t)(raw >> 1) ^ -(int64_t)(raw & 1));
            *pos = p + k + 1;
            return ST_OK;
        }
    }
    b = byte_at(d, end, p + 9);
    if (b < 0) {
        return ST_EOF;
    }
    if (b >= 0x80) {
        return ST_TOO_LONG;
    }
    u128 full = (u128)raw | ((u128)(unsigned)b << 63);
    *out = (i128)(full >> 1) ^ -(i128)(full & 1);
    *pos = p + 10;
    return ST_OK;
}

/* Raises strom.protocol.record_errors.invalid(message); `from_none` mirrors Python's
   `raise ... from None`. Always returns NULL. */
static PyObject *
raise_invalid(int from_none, const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *message = PyUnicode_FromFormatV(format, va);
    va_end(va);
    if (message == NULL) {
        return NULL;
    }
    PyObject *module = PyImport_ImportModule("strom.protocol.record_errors");
    if (module == NULL) {
        Py_DECREF(message);
        return NULL;
    }
    PyObject *exc = PyObject_CallMethod(module, "invalid", "O", message);
    Py_DECREF(module);
    Py_DECREF(message);
    if (exc == NULL) {
        return NULL;
    }
    if (from_none && PyExceptionInstance_Check(exc)) {
        Py_INCREF(Py_None);
        PyException_SetCause(exc, Py_None); /* steals; sets __suppress_context__ */
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *
i128_to_pylong(i128 v)
{
    if (v >= INT64_MIN && v <= INT64_MAX) {
        return PyLong_FromLongLong((long long)v);
    }
    /* |v| <= 2**70 here: magnitude split as high * 2**64 + low. */
    int negative = v < 0;
    u128 mag = negative ? (u128)0 - (u128)v : (u128)v;
    PyObject *high = PyLong_FromUnsignedLongLong((unsigned long long)(mag >> 64));
    PyObject *low = PyLong_FromUnsignedLongLong((unsigned long long)mag);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *shifted = NULL, *sum = NULL, *result = NULL;
    if (high != NULL && low != NULL && shift != NULL) {
        shifted = PyNumber_Lshift(high, shift);
    }
    if (shifted != NULL) {
        sum = PyNumber_Or(shifted, low);
    }
    if (sum != NULL) {
        result = negative ? PyNumber_Negative(sum) : (Py_INCREF(sum), sum);
    }
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    Py_XDECREF(sum);
    return result;
}

#define PREMATURE_EOF "Incorrect declared batch size, premature EOF reached (record %lld)"
#define REMAINING "Incorrect declared batch size, records still remaining in batch"
#define TOO_LONG "Found invalid record structure: varint too long"

/* Skips a record's headers, whose count varint (not 0: the caller handles that) is at *pos.
   Returns ST_OK, ST_EOF or ST_TOO_LONG, or raises the RecordsError and returns -1. */
static int
skip_headers(const uint8_t *d, int64_t end, int64_t *pos)
{
    int64_t count, key_len, value_len;
    int st = read_varint(d, end, pos, &count);
    if (st != ST_OK) {
        return st;
    }
    if (count < 0) {
        raise_invalid(0, "Found invalid number of record headers %lld", (long long)count);
        return -1;
    }
    /* Each header moves *pos forward by at least 2 bytes, so a huge count ends at EOF. */
    for (int64_t h = 0; h < count; h++) {
        st = read_varint(d, end, pos, &key_len);
        if (st != ST_OK) {
            return st;
        }
        if (key_len < 0) {
            raise_invalid(0, "Invalid negative header key size %lld", (long long)key_len);
            return -1;
        }
        *pos += key_len;
        st = read_varint(d, end, pos, &value_len);
        if (st != ST_OK) {
            return st;
        }
        if (value_len > 0) {
            *pos += value_len;
        }
    }
    return ST_OK;
}

/* Where a walk is: the next record's position and index, and the results so far. */
typedef struct {
    int64_t pos;
    int64_t index;
    i128 lo;
    i128 hi;
    int64_t nulls;
} walk_state;

/* Walks records st->index .. count - 1 from st->pos; returns 0, or -1 with the RecordsError
   set. A final walk is walk_records_py's: a record that runs past the end of the buffer is an
   error. A partial walk (final == 0) instead stops before the first record that is not wholly
   inside the buffer (its length varint, its declared extent or any read past the end), with
   st at that record's start: the caller walks it again with more bytes. Only a record's reads
   decide; each record's results are added to st once it has passed all its checks. */
static int
walk_core(const uint8_t *d, int64_t end, int64_t count, int final, walk_state *st)
{
    int64_t pos = st->pos;
    int64_t i;
    int rd;
    for (i = st->index; i < count; i++) {
        int64_t start = pos, length, offset_delta, key_len, value_len;
        i128 delta;
        if (UNLIKELY((rd = read_varint(d, end, &pos, &length)) != ST_OK)) {
            goto bad_read;
        }
        int64_t record_end = pos + length;
        if (UNLIKELY(record_end > end)) {
            if (!final) {
                st->pos = start;
                st->index = i;
                return 0;
            }
            raise_invalid(0, "Invalid record size: expected %lld bytes in record payload, "
                          "but the batch has only %lld remaining bytes",
                          (long long)length, (long long)(end - pos));
            return -1;
        }
        pos += 1; /* the attributes byte, unread */
        if (UNLIKELY((rd = read_varlong(d, end, &pos, &delta)) != ST_OK)) {
            goto bad_read;
        }
        if (UNLIKELY((rd = read_varint(d, end, &pos, &offset_delta)) != ST_OK)) {
            goto bad_read;
        }
        if (UNLIKELY(offset_delta != i)) {
            raise_invalid(0, "Record %lld has offset delta %lld, expected %lld",
                          (long long)i, (long long)offset_delta, (long long)i);
            return -1;
        }
        if (UNLIKELY((rd = read_varint(d, end, &pos, &key_len)) != ST_OK)) {
            goto bad_read;
        }
        if (key_len >= 0) {
            pos += key_len;
        }
        if (UNLIKELY((rd = read_varint(d, end, &pos, &value_len)) != ST_OK)) {
            goto bad_read;
        }
        if (value_len > 0) {
            pos += value_len;
        }
        int b = byte_at(d, end, pos);
        if (LIKELY(b == 0)) {
            pos += 1;
        }
        else if (b < 0) {
            rd = ST_EOF;
            goto bad_read;
        }
        else if ((rd = skip_headers(d, end, &pos)) != ST_OK) {
            if (rd < 0) {
                return -1;
            }
            goto bad_read;
        }
        if (UNLIKELY(pos != record_end)) {
            raise_invalid(0, "Invalid record size: expected to read %lld bytes in record "
                          "payload, but instead read %lld",
                          (long long)length, (long long)(length + pos - record_end));
            return -1;
        }
        if (delta < st->lo) {
            st->lo = delta;
        }
        if (delta > st->hi) {
            st->hi = delta;
        }
        st->nulls += key_len < 0;
        continue;

    bad_read:
        if (rd == ST_EOF && !final) {
            st->pos = start;
            st->index = i;
            return 0;
        }
        if (rd == ST_EOF) {
            raise_invalid(1, PREMATURE_EOF, (long long)i);
        }
        else {
            raise_invalid(0, TOO_LONG);
        }
        return -1;
    }
    st->pos = pos;
    st->index = i;
    if (final && pos != end) {
        raise_invalid(0, REMAINING);
        return -1;
    }
    return 0;
}

/* (lo, hi, nulls) as a tuple, preceded by (pos, index) when `with_position`. */
static PyObject *
walk_result(const walk_state *st, int with_position)
{
    PyObject *items[5] = {NULL, NULL, NULL, NULL, NULL};
    int n = 0;
    if (with_position) {
        items[n++] = PyLong_FromLongLong((long long)st->pos);
        items[n++] = PyLong_FromLongLong((long long)st->index);
    }
    items[n++] = i128_to_pylong(st->lo);
    items[n++] = i128_to_pylong(st->hi);
    items[n++] = PyLong_FromLongLong((long long)st->nulls);
    PyObject *result = PyTuple_New(n);
    for (int k = 0; k < n; k++) {
        if (items[k] == NULL || result == NULL) {
            for (int j = 0; j < n; j++) {
                Py_XDECREF(items[j]);
            }
            Py_XDECREF(result);
            return NULL;
        }
    }
    for (int k = 0; k < n; k++) {
        PyTuple_SET_ITEM(result, k, items[k]);
    }
    return result;
}

static void
walk_state_init(walk_state *st, int64_t pos, int64_t index)
{
    st->pos = pos;
    st->index = index;
    st->lo = (i128)1 << 64;
    st->hi = -st->lo;
    st->nulls = 0;
}

/* An int argument as int64, clamped to [low, high] (Python ints are unbounded). */
static int
clamped_index(PyObject *arg, int64_t low, int64_t high, int64_t *out)
{
    PyObject *index = PyNumber_Index(arg);
    if (index == NULL) {
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = overflow > 0 ? high : overflow < 0 ? low : v < low ? low : v > high ? high : v;
    return 0;
}

PyDoc_STRVAR(walk_records_doc,
"walk_records(buf, pos, count, /)\n--\n\n"
"Checks that `count` well-formed records with offset deltas 0..count-1 fill buf[pos:].\n\n"
"Returns (min timestamp delta, max timestamp delta, number of null keys); raises\n"
"RecordsError (INVALID_RECORD) otherwise. The C twin of record_walk.walk_records_py.");

static PyObject *
walk_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "walk_records() takes exactly 3 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    PyObject *result = NULL;
    int64_t end = (int64_t)view.len;
    int64_t pos, count;
    walk_state st;
    if (end > MAX_BUFFER_LEN) {
        PyErr_SetString(PyExc_OverflowError, "walk_records: buffer too large");
    }
    /* Beyond [-end - 1, end + 1] every start position fails alike: the first read is out of
       range (count > 0) or pos != end (count <= 0); no message shows pos. */
    else if (clamped_index(args[1], -end - 1, end + 1, &pos) == 0
             && clamped_index(args[2], 0, INT64_MAX, &count) == 0) {
        walk_state_init(&st, pos, 0);
        if (walk_core((const uint8_t *)view.buf, end, count, 1, &st) == 0) {
            result = walk_result(&st, 0);
        }
    }
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(walk_chunk_doc,
"walk_chunk(buf, pos, index, count, final, /)\n--\n\n"
"Walks records index..count-1 from buf[pos:] (0 <= pos <= len(buf), index >= 0).\n\n"
"Returns (pos, index, lo, hi, nulls): where the walk stopped and the results of the\n"
"records it walked. The C twin of record_walk.walk_chunk_py, which documents it.");

static PyObject *
walk_chunk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "walk_chunk() takes exactly 5 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    int final = PyObject_IsTrue(args[4]);
    if (final < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    PyObject *result = NULL;
    int64_t end = (int64_t)view.len;
    int64_t pos, index, count;
    walk_state st;
    if (end > MAX_BUFFER_LEN) {
        PyErr_SetString(PyExc_OverflowError, "walk_chunk: buffer too large");
    }
    else if (clamped_index(args[1], -1, end + 1, &pos) == 0
             && clamped_index(args[2], -1, INT64_MAX, &index) == 0
             && clamped_index(args[3], 0, INT64_MAX, &count) == 0) {
        if (pos < 0 || pos > end || index < 0) {
            PyErr_SetString(PyExc_ValueError,
                            "walk_chunk: pos must be in [0, len(buf)] and index >= 0");
        }
        else {
            walk_state_init(&st, pos, index);
            if (walk_core((const uint8_t *)view.buf, end, count, final, &st) == 0) {
                result = walk_result(&st, 1);
            }
        }
    }
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(walk_headers_doc,
"walk_headers(buf, pos, count, /)\n--\n\n"
"Skips up to `count` record headers from buf[pos:] (0 <= pos <= len(buf)).\n\n"
"Returns (pos, headers left). The C twin of record_walk.walk_headers_py, which documents it.");

static PyObject *
walk_headers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "walk_headers() takes exactly 3 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    PyObject *result = NULL;
    const uint8_t *d = (const uint8_t *)view.buf;
    int64_t end = (int64_t)view.len;
    int64_t pos, left;
    if (end > MAX_BUFFER_LEN) {
        PyErr_SetString(PyExc_OverflowError, "walk_headers: buffer too large");
    }
    else if (clamped_index(args[1], -1, end + 1, &pos) == 0
             && clamped_index(args[2], 0, INT64_MAX, &left) == 0) {
        if (pos < 0 || pos > end) {
            PyErr_SetString(PyExc_ValueError, "walk_headers: pos must be in [0, len(buf)]");
            goto done;
        }
        /* pos stays below end + 2**35 + 1: each header reads a varint below end first. */
        for (; left > 0; left--) {
            int64_t p = pos, key_len, value_len;
            int rd = read_varint(d, end, &p, &key_len);
            if (rd == ST_OK && key_len < 0) {
                raise_invalid(0, "Invalid negative header key size %lld", (long long)key_len);
                goto done;
            }
            if (rd == ST_OK) {
                p += key_len;
                rd = read_varint(d, end, &p, &value_len);
            }
            if (rd == ST_TOO_LONG) {
                raise_invalid(0, TOO_LONG);
                goto done;
            }
            if (rd == ST_EOF) {
                break;
            }
            pos = p + (value_len > 0 ? value_len : 0);
        }
        result = Py_BuildValue("(LL)", (long long)pos, (long long)left);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(record_heads_doc,
"record_heads(buf, pos, count, value, n, /)\n--\n\n"
"The distinct heads (first min(n, len) bytes; None for null) of the keys (value false) or\n"
"values (value true) of the `count` records that fill buf[pos:], as a set. For the broker's\n"
"schema validation: a batch's records usually share one schema id, so this allocates one\n"
"bytes object per change of head, not per record. Raises RecordsError (INVALID_RECORD) on\n"
"malformed records. The C twin of record_walk.record_heads_py.");

static PyObject *
record_heads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "record_heads() takes exactly 5 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    int want_value = PyObject_IsTrue(args[3]);
    if (want_value < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    const uint8_t *d = (const uint8_t *)view.buf;
    int64_t end = (int64_t)view.len;
    int64_t pos = 0, count = 0, n = 0;
    PyObject *heads = NULL;
    if (end > MAX_BUFFER_LEN) {
        PyErr_SetString(PyExc_OverflowError, "record_heads: buffer too large");
        goto done;
    }
    if (clamped_index(args[1], 0, end, &pos) != 0
        || clamped_index(args[2], 0, INT64_MAX, &count) != 0
        || clamped_index(args[4], 0, 1 << 20, &n) != 0) {
        goto done;
    }
    heads = PySet_New(NULL);
    if (heads == NULL) {
        goto done;
    }
    /* The previous head: -2 none yet, -1 null, else its start and length. */
    int64_t last_start = -2, last_len = -2;
    for (int64_t i = 0; i < count; i++) {
        int64_t length, skip, key_len, value_len;
        i128 delta;
        int rd;
        if ((rd = read_varint(d, end, &pos, &length)) != ST_OK) {
            goto bad_read;
        }
        int64_t record_end = pos + length;
        if (length < 0 || record_end > end) {
            raise_invalid(0, "Invalid record size: expected %lld bytes in record payload",
                          (long long)length);
            goto fail;
        }
        pos += 1;
        if ((rd = read_varlong(d, end, &pos, &delta)) != ST_OK
            || (rd = read_varint(d, end, &pos, &skip)) != ST_OK
            || (rd = read_varint(d, end, &pos, &key_len)) != ST_OK) {
            goto bad_read;
        }
        int64_t field_start = pos, field_len = key_len;
        if (key_len > 0) {
            pos += key_len;
        }
        if (want_value) {
            if ((rd = read_varint(d, end, &pos, &value_len)) != ST_OK) {
                goto bad_read;
            }
            field_start = pos;
            field_len = value_len;
        }
        if (field_len >= 0 && field_start + field_len > record_end) {
            raise_invalid(0, PREMATURE_EOF, (long long)i);
            goto fail;
        }
        int64_t head_len = field_len < 0 ? -1 : (field_len < n ? field_len : n);
        if (head_len != last_len
            || (head_len > 0 && memcmp(d + field_start, d + last_start, head_len) != 0)) {
            PyObject *head = head_len < 0 ? (Py_INCREF(Py_None), Py_None)
                : PyBytes_FromStringAndSize((const char *)d + field_start, head_len);
            if (head == NULL) {
                goto fail;
            }
            int added = PySet_Add(heads, head);
            Py_DECREF(head);
            if (added != 0) {
                goto fail;
            }
            last_start = field_start;
            last_len = head_len;
        }
        pos = record_end;
        continue;
    bad_read:
        if (rd == ST_EOF) {
            raise_invalid(1, PREMATURE_EOF, (long long)i);
        }
        else {
            raise_invalid(0, TOO_LONG);
        }
        goto fail;
    }
    goto done;
fail:
    Py_CLEAR(heads);
done:
    PyBuffer_Release(&view);
    return heads;
}

static PyMethodDef methods[] = {
    {"walk_records", (PyCFunction)(void (*)(void))walk_records, METH_FASTCALL, walk_records_doc},
    {"walk_chunk", (PyCFunction)(void (*)(void))walk_chunk, METH_FASTCALL, walk_chunk_doc},
    {"walk_headers", (PyCFunction)(void (*)(void))walk_headers, METH_FASTCALL,
     walk_headers_doc},
    {"record_heads", (PyCFunction)(void (*)(void))record_heads, METH_FASTCALL,
     record_heads_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "strom.protocol._record_walk",
    .m_doc = "The produce-path record walk in C; see strom.protocol.record_walk.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__record_walk(void)
{
    return PyModuleDef_Init(&module_def);
}
