/** The WebVNC page's client with noVNC, one ES module (made by scripts/build-portal-assets.js). */
export declare const VNC_VIEWER_SCRIPT: string
