/* A bytes object written in place: the row writers format straight into the storage
 * of the bytes object that is then handed out, so no text is copied after it is
 * formatted. The object is referenced by this struct alone until ftr_bb_finish gives
 * it away, which is what _PyBytes_Resize requires; growing and the final shrink are a
 * realloc (an mremap for large objects), not a copy. All of these need the GIL. */
#ifndef FASTTCP_ROWS_PYBUF_IMPL_H
#define FASTTCP_ROWS_PYBUF_IMPL_H

#include <Python.h>

typedef struct {
    PyObject *obj;                      /* the bytes object, or NULL */
    char *data;                         /* its storage */
    size_t len;                         /* bytes written */
    size_t cap;                         /* its size */
} ftr_bytes_buf_t;

/* -1 with MemoryError set */
static int ftr_bb_init(ftr_bytes_buf_t *b, size_t cap)
{
    b->obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (b->obj == NULL)
        return -1;
    b->data = PyBytes_AS_STRING(b->obj);
    b->len = 0;
    b->cap = cap;
    return 0;
}

static int ftr_bb_grow(ftr_bytes_buf_t *b, size_t cap)
{
    if (_PyBytes_Resize(&b->obj, (Py_ssize_t)cap) < 0)       /* frees it and sets b->obj = NULL */
        return -1;
    b->data = PyBytes_AS_STRING(b->obj);
    b->cap = cap;
    return 0;
}

/* The bytes written, as a new reference; the buffer is empty afterwards. */
static PyObject *ftr_bb_finish(ftr_bytes_buf_t *b)
{
    if (_PyBytes_Resize(&b->obj, (Py_ssize_t)b->len) < 0)
        return NULL;
    PyObject *o = b->obj;
    b->obj = NULL;
    b->data = NULL;
    b->len = b->cap = 0;
    return o;
}

static void ftr_bb_clear(ftr_bytes_buf_t *b)
{
    Py_CLEAR(b->obj);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
