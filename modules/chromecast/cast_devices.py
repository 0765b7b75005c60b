"""Chromecast devices on Debian's python3-pychromecast (9.4) and python3-zeroconf.

A CastDevice is one device: a pychromecast connection that reconnects by itself (tries=None),
the device's status (connected, app running, media state, volume) and the flow it shows.
DeviceManager keeps the devices of the configuration (by address) and of mDNS discovery
(CastBrowser on a zeroconf instance bound to the configured interfaces), and tells its owner
when a device changed or a flow it showed ended on its own.

pychromecast calls the listeners from its own threads: every state change happens under the
device's lock, and the owner's callbacks are called outside of it.
"""

import logging
import re
import threading

import pychromecast
from pychromecast.controllers.media import MediaStatusListener
from pychromecast.controllers.receiver import CastStatusListener, LaunchErrorListener
from pychromecast.discovery import CastBrowser, SimpleCastListener
from pychromecast.socket_client import CONNECTION_STATUS_CONNECTED, ConnectionStatusListener

log = logging.getLogger("chromecast.devices")

DEFAULT_MEDIA_RECEIVER = "CC1AD845"
HLS_CONTENT_TYPE = "application/x-mpegURL"
# Media states that end what a flow shows (the receiver's idleReason).
ENDING_IDLE_REASONS = ("ERROR", "INTERRUPTED", "FINISHED", "CANCELLED")


def slug(name):
    """An entity id from a device's friendly name: "Living Room TV" -> "living-room-tv"."""
    s = re.sub(r"[^a-z0-9_.-]+", "-", (name or "").lower()).strip("-.")
    return s[:64] or "chromecast"


class CastError(Exception):
    """A cast request that could not be carried out; .unavailable: the device is not there."""

    def __init__(self, message, unavailable=False):
        super().__init__(message)
        self.unavailable = unavailable


class CastDevice(ConnectionStatusListener, CastStatusListener, MediaStatusListener, LaunchErrorListener):
    def __init__(self, manager, entity_id, *, host=None, port=8009, cast_info=None, zconf=None,
                 configured=False):
        self.manager = manager
        self.entity_id = entity_id
        self.host = host if host is not None else (cast_info.host if cast_info else None)
        self.port = port if cast_info is None else cast_info.port
        self.cast_info = cast_info
        self.zconf = zconf
        self.configured = configured
        self.friendly_name = cast_info.friendly_name if cast_info else entity_id
        self.model = cast_info.model_name if cast_info else ""
        self.uuid = str(cast_info.uuid) if cast_info else ""
        self.lock = threading.Lock()
        self.cast = None
        self.connected = False
        self.gone = False
        self.reason = "connecting"
        self.app_id = None
        self.app_name = ""
        self.volume = None
        self.media_state = ""
        self.content_id = ""
        self.flow_id = None
        self.flow_url = None
        self.flow_confirmed = False
        self.play_event = threading.Event()
        self.play_error = None
        self.closed = False

    # -- lifecycle --

    def start(self):
        # pychromecast's constructor asks the device for its status over HTTPS (up to 30 s):
        # never on a gRPC thread.
        threading.Thread(target=self._connect, name=f"cast-{self.entity_id}", daemon=True).start()

    def _connect(self):
        retry = self.manager.retry_interval_ms / 1000.0
        try:
            if self.cast_info is not None:
                cast = pychromecast.get_chromecast_from_cast_info(self.cast_info, self.zconf, tries=None,
                                                                  retry_wait=retry, timeout=10)
            else:
                cast = pychromecast.get_chromecast_from_host(
                    (self.host, self.port, None, "", self.entity_id), tries=None, retry_wait=retry, timeout=10)
        except Exception as e:  # noqa: BLE001 - a bad device must not take the module down
            self._update(reason=f"cannot set up the connection: {e}")
            return
        with self.lock:
            if self.closed:
                return
            self.cast = cast
        cast.register_connection_listener(self)
        cast.register_status_listener(self)
        cast.register_launch_error_listener(self)
        cast.media_controller.register_status_listener(self)
        cast.start()

    def close(self):
        with self.lock:
            self.closed = True
            cast = self.cast
        if cast is not None:
            cast.disconnect(blocking=False)

    # -- pychromecast listeners (its threads) --

    def new_connection_status(self, status):
        if status.status == CONNECTION_STATUS_CONNECTED:
            self._update(connected=True, gone=False, reason="")
            return
        address = f"{status.address.address}:{status.address.port}" if status.address and status.address.address \
            else (self.friendly_name or self.entity_id)
        reason = {
            "CONNECTING": f"connecting to {address}",
            "LOST": f"connection to {address} lost; reconnecting",
            "FAILED": f"cannot connect to {address}; retrying",
            "FAILED_RESOLVE": f"cannot resolve {address} over mDNS; retrying",
            "DISCONNECTED": f"disconnected from {address}",
        }.get(status.status, f"connection {status.status.lower()} ({address})")
        ended = self._update(connected=False, reason=reason,
                             end_flow=f"the device went away ({reason.split(';')[0]})")
        if ended:
            log.info("%s: %s", self.entity_id, ended[2])

    def new_cast_status(self, status):
        if status is None:
            return
        app_id = status.app_id
        end = None
        if self.flow_confirmed and app_id != DEFAULT_MEDIA_RECEIVER:
            end = f"another app took over the device ({status.display_name or 'none'})"
        self._update(app_id=app_id, app_name=status.display_name or "", volume=status.volume_level,
                     end_flow=end)

    def new_media_status(self, status):
        if status is None:
            return
        state = status.player_state or ""
        idle_reason = getattr(status, "idle_reason", None)
        end = None
        with self.lock:
            waiting = self.flow_id is not None and not self.flow_confirmed
            ours = self.flow_url is not None and status.content_id == self.flow_url
        if waiting and ours and state in ("PLAYING", "BUFFERING"):
            self.play_error = None
            self.play_event.set()
        elif waiting and state == "IDLE" and idle_reason == "ERROR":
            self.play_error = "the device could not play the stream (media idle: ERROR)"
            self.play_event.set()
        elif self.flow_confirmed and state == "IDLE" and idle_reason in ENDING_IDLE_REASONS:
            end = f"the device stopped playing ({idle_reason.lower()})"
        self._update(media_state=state, content_id=status.content_id or "", end_flow=end)

    def new_launch_error(self, status):
        with self.lock:
            waiting = self.flow_id is not None and not self.flow_confirmed
        if waiting:
            self.play_error = f"the device could not start the Default Media Receiver ({status.reason})"
            self.play_event.set()

    # -- state --

    def _update(self, end_flow=None, **fields):
        """Apply fields under the lock; end the flow if end_flow (a reason) is given and a
        confirmed flow runs. Notifies the manager; returns (flow_id, entity_id, reason) if ended."""
        ended = None
        with self.lock:
            for k, v in fields.items():
                setattr(self, k, v)
            if end_flow and self.flow_id is not None and self.flow_confirmed:
                ended = (self.flow_id, self.entity_id, end_flow)
                self.flow_id = self.flow_url = None
                self.flow_confirmed = False
            elif end_flow and self.flow_id is not None and not fields.get("connected", True):
                self.play_error = end_flow
                self.play_event.set()
        self.manager.device_changed(self, ended)
        return ended

    def state(self):
        """idle, casting, busy (another app), unavailable."""
        if not self.connected:
            return "unavailable"
        if self.flow_id is not None and self.flow_confirmed:
            return "casting"
        if self.app_id and self.app_id != DEFAULT_MEDIA_RECEIVER and self.app_name not in ("Backdrop", ""):
            return "busy"
        return "idle"

    def attributes(self):
        attrs = {"host": self.host or "", "port": str(self.port), "source": "configured" if self.configured else "mdns"}
        if self.uuid:
            attrs["uuid"] = self.uuid
        if self.model:
            attrs["model"] = self.model
        if self.friendly_name:
            attrs["friendly_name"] = self.friendly_name
        if self.app_name:
            attrs["app"] = self.app_name
        if self.volume is not None:
            attrs["volume"] = f"{self.volume:.2f}"
        if self.media_state:
            attrs["media_state"] = self.media_state
        if not self.connected and self.reason:
            attrs["reason"] = self.reason
        if self.flow_id:
            attrs["flow"] = self.flow_id
        return attrs

    # -- requests (gRPC threads) --

    def play(self, flow_id, url, timeout):
        """Cast url (HLS) with the Default Media Receiver; returns once it plays or buffers."""
        with self.lock:
            cast = self.cast
            if cast is None or not self.connected:
                raise CastError(f"device {self.entity_id} is not reachable: {self.reason}", unavailable=True)
            self.flow_id, self.flow_url, self.flow_confirmed = flow_id, url, False
            self.play_error = None
            self.play_event.clear()
        log.info("%s: casting %s for flow %s", self.entity_id, _safe_url(url), flow_id)
        try:
            cast.media_controller.play_media(url, HLS_CONTENT_TYPE, stream_type="LIVE", autoplay=True)
        except Exception as e:  # noqa: BLE001 - pychromecast raises several kinds
            self._abandon(flow_id)
            raise CastError(f"device {self.entity_id}: cannot start casting: {e}", unavailable=True) from None
        if not self.play_event.wait(timeout):
            self._abandon(flow_id)
            raise CastError(f"device {self.entity_id} did not start playing within {timeout:.0f} s", unavailable=True)
        if self.play_error:
            err = self.play_error
            self._abandon(flow_id)
            raise CastError(f"device {self.entity_id}: {err}", unavailable=True)
        with self.lock:
            if self.flow_id == flow_id:
                self.flow_confirmed = True
        self.manager.device_changed(self, None)

    def _abandon(self, flow_id):
        with self.lock:
            if self.flow_id == flow_id:
                self.flow_id = self.flow_url = None
                self.flow_confirmed = False

    def stop_flow(self, flow_id):
        """Stop what the flow shows (idempotent): stop the media and quit the receiver app."""
        with self.lock:
            if self.flow_id != flow_id:
                return False
            self.flow_id = self.flow_url = None
            self.flow_confirmed = False
            cast = self.cast if self.connected else None
            ours = self.app_id == DEFAULT_MEDIA_RECEIVER
        if cast is not None and ours:
            try:
                cast.media_controller.stop()
                cast.quit_app()
            except Exception as e:  # noqa: BLE001
                log.warning("%s: stopping the cast failed: %s, ignoring", self.entity_id, e)
        self.manager.device_changed(self, None)
        return True

    def set_volume(self, level):
        with self.lock:
            cast = self.cast if self.connected else None
        if cast is None:
            raise CastError(f"device {self.entity_id} is not reachable: {self.reason}", unavailable=True)
        cast.set_volume(level)


def _safe_url(url):
    """A URL for logs, without credentials or query (tokens live there)."""
    m = re.match(r"^([a-z]+://)(?:[^@/]*@)?([^/?#]*)([^?#]*)", url or "")
    return "".join(m.groups()) if m else "<url>"


class DeviceManager:
    """The devices of the configuration and of discovery.

    on_change(device or None, entity_id, ended): called when a device was added, changed or
    removed (device None); ended is (flow_id, entity_id, reason) when a flow ended by itself."""

    def __init__(self, on_change):
        self.on_change = on_change
        self.lock = threading.RLock()
        self.devices = {}  # entity id -> CastDevice
        self.by_uuid = {}  # discovered uuid -> entity id
        self.retry_interval_ms = 5000
        self.zconf = None
        self.browser = None
        self.mdns_interfaces = None

    def device_changed(self, device, ended):
        with self.lock:
            if self.devices.get(device.entity_id) is not device:
                return
        self.on_change(device, device.entity_id, ended)

    def get(self, entity_id):
        with self.lock:
            return self.devices.get(entity_id)

    def all(self):
        with self.lock:
            return list(self.devices.values())

    def apply(self, config):
        """Reconcile with a validated configuration."""
        self.retry_interval_ms = config["retry_interval_ms"]
        wanted = {d["name"]: d for d in config["devices"]}
        removed, added = [], []
        with self.lock:
            for eid, dev in list(self.devices.items()):
                if dev.configured and (eid not in wanted or (dev.host, dev.port) !=
                                       (wanted[eid]["host"], wanted[eid]["port"])):
                    removed.append(self.devices.pop(eid))
            for name, d in wanted.items():
                if name in self.devices and self.devices[name].configured:
                    continue
                if name in self.devices:  # a discovered device had this id: it gets another
                    other = self.devices.pop(name)
                    removed.append(other)
                    self.by_uuid.pop(other.uuid, None)
                dev = CastDevice(self, name, host=d["host"], port=d["port"], configured=True)
                self.devices[name] = dev
                added.append(dev)
        for dev in removed:
            dev.close()
            self.on_change(None, dev.entity_id, self._end_of(dev, "the device was removed from the configuration"))
        for dev in added:
            self.on_change(dev, dev.entity_id, None)
            dev.start()
        self._discovery(config["discovery"], config["mdns_interfaces"])

    @staticmethod
    def _end_of(dev, reason):
        return (dev.flow_id, dev.entity_id, reason) if dev.flow_id and dev.flow_confirmed else None

    # -- mDNS discovery --

    def _discovery(self, enabled, interfaces):
        interfaces = list(interfaces) or None
        if self.browser is not None and (not enabled or interfaces != self.mdns_interfaces):
            self._stop_discovery()
        if not enabled or self.browser is not None:
            return
        import zeroconf  # only when discovery is on
        self.mdns_interfaces = interfaces
        self.zconf = zeroconf.Zeroconf(interfaces=interfaces or zeroconf.InterfaceChoice.All)
        self.browser = CastBrowser(SimpleCastListener(self._mdns_added, self._mdns_removed, self._mdns_updated),
                                   self.zconf)
        self.browser.start_discovery()
        log.info("mDNS discovery on %s", ", ".join(interfaces) if interfaces else "every interface")

    def _stop_discovery(self):
        browser, zconf = self.browser, self.zconf
        self.browser = self.zconf = None
        with self.lock:
            gone = [self.devices.pop(eid) for eid, d in list(self.devices.items()) if not d.configured]
            self.by_uuid.clear()
        for dev in gone:
            dev.close()
            self.on_change(None, dev.entity_id, self._end_of(dev, "discovery was turned off"))
        browser.stop_discovery()
        zconf.close()

    def _mdns_added(self, uuid, _service):
        browser = self.browser
        if browser is None:
            return
        info = browser.devices.get(uuid)
        if info is None:
            return
        with self.lock:
            eid = self.by_uuid.get(str(uuid))
            if eid is not None:
                dev = self.devices.get(eid)
                if dev is not None:
                    dev.gone = False
                    log.info("%s: seen again over mDNS", eid)
                    new = None
                else:
                    new = eid
            else:
                if any(d.configured and (d.host, d.port) == (info.host, info.port) for d in self.devices.values()):
                    return  # configured by address already
                eid = slug(info.friendly_name)
                if eid in self.devices:
                    eid = f"{eid[:55]}-{str(uuid)[:8]}"
                self.by_uuid[str(uuid)] = eid
                new = eid
            if new is not None:
                dev = CastDevice(self, new, cast_info=info, zconf=self.zconf)
                self.devices[new] = dev
        if new is not None:
            log.info("found %s (%s, %s) over mDNS at %s:%s", new, info.friendly_name, info.model_name, info.host, info.port)
            self.on_change(dev, new, None)
            dev.start()

    def _mdns_updated(self, uuid, _service):
        self._mdns_added(uuid, _service)

    def _mdns_removed(self, uuid, _service, _cast_info):
        with self.lock:
            dev = self.devices.get(self.by_uuid.get(str(uuid), ""))
        if dev is not None:
            log.info("%s: gone from mDNS", dev.entity_id)
            dev._update(gone=True, connected=False, reason="gone from the network (mDNS)",
                        end_flow="the device went away (gone from mDNS)")

    def close(self):
        if self.browser is not None:
            self._stop_discovery()
        for dev in self.all():
            dev.close()
