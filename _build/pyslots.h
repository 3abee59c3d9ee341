/*
 * Reading and writing a Python class's __slots__ from C, at the offsets its
 * member descriptors hold: no attribute lookup per access. A renamed slot
 * fails loudly when slot_offset() looks it up, never silently later.
 */
#ifndef URINGIO_PYSLOTS_H
#define URINGIO_PYSLOTS_H

#include <Python.h>
#include <structmember.h>

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline int slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *off)
{
    /* A __slots__ attribute is a member descriptor holding its offset in
     * the instance: reading it there skips the attribute lookup. */
    PyObject *d = PyDict_GetItemString(type->tp_dict, name);
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", type->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX && m->type != T_OBJECT) {
        PyErr_Format(PyExc_TypeError, "%s.%s does not hold an object", type->tp_name, name);
        return -1;
    }
    *off = m->offset;
    return 0;
}

#endif
