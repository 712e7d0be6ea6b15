//! On-target tests of the CMSDK APB UART driver (QEMU mps2-an386 UART0) through its registers.
//! No loopback: under `cargo test` UART0 has no host backend (`-serial none`), so sent bytes
//! are dropped and nothing is ever received.
#![no_std]
#![no_main]

use ldl_firmware as _; // board: defmt logger, panic handler

#[defmt_test::tests]
mod tests {
    use defmt::{assert, assert_eq, unwrap};
    use embedded_io::{ReadReady, Write, WriteReady};
    use ldl_firmware::board::cmsdk_uart::{CmsdkUart, CLOCK_HZ, CTRL_RX_EN, CTRL_TX_EN, MIN_BAUDDIV, STATE_RX_FULL, STATE_TX_FULL};

    const DIV: u32 = CLOCK_HZ / 115_200;

    #[init]
    fn init() -> CmsdkUart {
        unwrap!(CmsdkUart::uart0(DIV))
    }

    #[test]
    fn uart0_can_be_taken_once(_uart: &mut CmsdkUart) {
        assert!(CmsdkUart::uart0(DIV).is_none());
    }

    #[test]
    fn identifies_as_cmsdk_apb_uart(uart: &mut CmsdkUart) {
        let id = uart.id_bytes();
        // CID0..3 = 0x0D 0xF0 0x05 0xB1 (CoreSight component id 0xB105F00D).
        assert_eq!(id[8..12], [0x0D, 0xF0, 0x05, 0xB1]);
        assert_eq!(uart.part_number(), 0x821);
        // JEP106 designer: ARM (0x3B) = PID1[7:4] | PID2[2:0] << 4.
        assert_eq!((id[5] >> 4) | ((id[6] & 0x7) << 4), 0x3B);
    }

    #[test]
    fn enabled_with_baud_divider(uart: &mut CmsdkUart) {
        assert_eq!(uart.ctrl() & (CTRL_TX_EN | CTRL_RX_EN), CTRL_TX_EN | CTRL_RX_EN);
        assert_eq!(uart.bauddiv(), DIV);
        assert_eq!(DIV, 217);
    }

    #[test]
    fn baud_divider_is_clamped_to_16(uart: &mut CmsdkUart) {
        uart.configure(3);
        assert_eq!(uart.bauddiv(), MIN_BAUDDIV);
        uart.configure(DIV);
        assert_eq!(uart.bauddiv(), DIV);
        assert_eq!(uart.ctrl() & (CTRL_TX_EN | CTRL_RX_EN), CTRL_TX_EN | CTRL_RX_EN);
    }

    #[test]
    fn idle_state(uart: &mut CmsdkUart) {
        assert_eq!(uart.state() & (STATE_TX_FULL | STATE_RX_FULL), 0);
        assert_eq!(uart.read_ready(), Ok(false));
        assert_eq!(uart.write_ready(), Ok(true));
        assert_eq!(uart.try_read_byte(), None);
    }

    #[test]
    fn writes_drain(uart: &mut CmsdkUart) {
        assert_eq!(uart.write_all(b"hello from the CMSDK UART\r\n"), Ok(()));
        assert_eq!(uart.flush(), Ok(()));
        assert_eq!(uart.state() & STATE_TX_FULL, 0);
        assert_eq!(uart.rx_overruns(), 0);
    }
}
