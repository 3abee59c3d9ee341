/*
 * The exception being raised, taken from the thread as one object with its
 * traceback on it (a new reference): what a C path hands to Python code
 * that answers it. 3.11 has no PyErr_GetRaisedException.
 */
#ifndef URINGIO_RAISED_H
#define URINGIO_RAISED_H

#include <Python.h>

static PyObject *raised_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
#endif
}

#endif
