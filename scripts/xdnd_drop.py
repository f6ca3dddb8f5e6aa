#!/usr/bin/env python3
"""Drops a file on an X11 window by the XDND protocol, as a file manager does: for checking
drag-and-drop under Xvfb (the Linux window, or the Windows one under Wine) without a desktop.

  python3 scripts/xdnd_drop.py WINDOW_ID X Y FILE

WINDOW_ID is the top-level window (`xdotool search --name cnn-explorer`), X Y the point in it
to drop at. Needs python-xlib (`pip install python-xlib`). Exit status 0 when the target
accepted and finished the drop.
"""

import os
import sys
import time
import urllib.parse

from Xlib import X, Xatom, display, protocol


def main():
    target_id, x, y, path = int(sys.argv[1], 0), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    uri = "file://" + urllib.parse.quote(os.path.abspath(path)) + "\r\n"
    d = display.Display()
    root = d.screen().root
    atom = lambda name: d.intern_atom(name)
    aware, enter, position, status, drop, finished, leave, selection, uri_list, copy = (
        atom(n) for n in ["XdndAware", "XdndEnter", "XdndPosition", "XdndStatus", "XdndDrop",
                          "XdndFinished", "XdndLeave", "XdndSelection", "text/uri-list",
                          "XdndActionCopy"])
    # The window that takes drops: the top-level one or a child carrying XdndAware.
    target = d.create_resource_object("window", target_id)
    candidates = [target] + list(target.query_tree().children)
    taker = next((w for w in candidates if w.get_full_property(aware, X.AnyPropertyType)), None)
    if taker is None:
        print("no XdndAware window there", file=sys.stderr)
        return 1
    version = min(5, taker.get_full_property(aware, X.AnyPropertyType).value[0])
    source = root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    source.set_selection_owner(selection, X.CurrentTime)
    geometry = target.translate_coords(root, 0, 0)
    root_x, root_y = -geometry.x + x, -geometry.y + y

    def send(kind, data):
        event = protocol.event.ClientMessage(window=taker, client_type=kind,
                                             data=(32, data))
        taker.send_event(event)
        d.flush()

    send(enter, [source.id, version << 24, uri_list, 0, 0])
    send(position, [source.id, 0, (root_x << 16) | root_y, X.CurrentTime, copy])
    deadline = time.time() + 10
    accepted = dropped = False
    while time.time() < deadline:
        while d.pending_events():
            e = d.next_event()
            if e.type == X.ClientMessage and e.client_type == status:
                accepted = bool(e.data[1][1] & 1)
                if accepted and not dropped:
                    send(drop, [source.id, 0, X.CurrentTime, 0, 0])
                    dropped = True
                elif not accepted:
                    send(leave, [source.id, 0, 0, 0, 0])
                    print("the window refused the drop", file=sys.stderr)
                    return 1
            elif e.type == X.SelectionRequest:
                e.requestor.change_property(e.property, e.target, 8, uri.encode())
                notify = protocol.event.SelectionNotify(time=e.time, requestor=e.requestor,
                                                        selection=e.selection, target=e.target,
                                                        property=e.property)
                e.requestor.send_event(notify)
                d.flush()
            elif e.type == X.ClientMessage and e.client_type == finished:
                print(f"dropped {path}")
                return 0
        time.sleep(0.05)
    print(f"no answer (accepted: {accepted}, dropped: {dropped})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
